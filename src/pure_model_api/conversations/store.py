"""Conversations, their message items and stored responses, in SQL: one store interface, two
databases (sqlite_store.py, the default; postgres_store.py, for several replicas).

One store, several views: a /chat session is a conversation (its id is the session id), the
Conversations API lists and edits the same items, and a stored response records its input and
output items (in its conversation, if it has one). Everything is keyed by owner: the owner is
derived from the API key, so one key never sees another key's data.

Items are written only once a reply is complete, in one transaction with the response (if any)
and the window's trimming: at most `max_rounds` rounds per conversation, the oldest half dropped
at once past that (history.py says why). The SQL here runs on both databases; a subclass supplies
connections, transactions, the schema and its migrations, and the per-conversation lock that
replicas share (`hold`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator

from pure_model_api.conversations.history import Message, drop_rounds, group_rounds
from pure_model_api.errors import NotFound

ITEM_COLUMNS = "id, role, text, response_id, created_at, data"
ITEM_PREFIXES = {"function_call": "fc", "function_call_output": "fco"}  # else msg_...
Run = Callable[..., object]  # run(sql, params=()) -> a DB-API cursor; SQL written with "?" placeholders


def new_id(prefix: str, separator: str = "_") -> str:
    """An id as OpenAI's look: `resp_...`, `msg_...`, `conv_...` (and `chatcmpl-...` with "-")."""
    return f"{prefix}{separator}{uuid.uuid4().hex}"


def _message(row) -> Message:
    return Message(id=row[0], role=row[1], text=row[2], response_id=row[3], created_at=row[4],
                   extra=json.loads(row[5]) if row[5] else {})


class ConversationStore:
    kind = "sql"

    def __init__(self, max_rounds: int = 20):
        self.max_rounds = max_rounds
        self.operations = 0  # what /status and /metrics report
        self.errors = 0
        self.seconds = 0.0
        self.on_operation: Callable[[float, bool], None] | None = None  # (seconds, ok), for metrics

    # ---- what a database supplies ----
    def _connect(self, write: bool) -> contextlib.AbstractContextManager[Run]:
        """A `run` function; with `write`, inside one transaction that commits on leaving."""
        raise NotImplementedError

    def replica_lock(self, owner: str, cid: str) -> contextlib.AbstractAsyncContextManager:
        """Hold the conversation against other replicas, for a whole turn. One process needs
        nothing more than the service's own lock: the default holds nothing."""
        return contextlib.nullcontext()

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"kind": self.kind, "operations": self.operations, "errors": self.errors,
                "mean_latency_ms": round(1000 * self.seconds / self.operations, 3) if self.operations else 0.0}

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Run]:
        started, ok = time.perf_counter(), False
        try:
            with self._connect(write) as run:
                yield run
            ok = True
        finally:
            elapsed = time.perf_counter() - started
            self.operations += 1
            self.seconds += elapsed
            self.errors += not ok
            if self.on_operation is not None:
                self.on_operation(elapsed, ok)

    # ---- writing, inside a transaction ----
    @staticmethod
    def _ensure_conversation(run: Run, owner: str, cid: str, now: float, metadata: dict | None = None) -> None:
        run("INSERT INTO conversations (owner, id, metadata, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, id) DO UPDATE SET updated_at = excluded.updated_at",
            (owner, cid, json.dumps(metadata or {}), now, now))

    @classmethod
    def _use_conversation(cls, run: Run, owner: str, cid: str, now: float, create: bool) -> None:
        """Mark the conversation used; create it, or (without `create`) require that it exists."""
        if create:
            cls._ensure_conversation(run, owner, cid, now)
        elif run("UPDATE conversations SET updated_at = ? WHERE owner = ? AND id = ?",
                 (now, owner, cid)).rowcount == 0:
            raise NotFound(f"conversation '{cid}' not found", param="conversation")

    @staticmethod
    def _insert(run: Run, owner: str, cid: str | None, messages: list[Message], response_id: str | None,
                now: float, is_output: bool = False) -> list[Message]:
        stored = []
        for m in messages:
            item = Message(role=m.role, text=m.text, id=m.id or new_id(ITEM_PREFIXES.get(m.role, "msg")),
                           response_id=response_id, created_at=now, extra=m.extra)
            run("INSERT INTO items (id, owner, conversation_id, response_id, is_output, role, text, created_at, "
                "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.id, owner, cid, response_id, int(is_output), item.role, item.text, now,
                 json.dumps(item.extra) if item.extra else None))
            stored.append(item)
        return stored

    def _trim(self, run: Run, owner: str, cid: str) -> None:
        """Past the window, drop the oldest rounds at once (from the conversation; a stored
        response keeps its own record of the items)."""
        rounds = group_rounds(self._messages(run, owner, cid))
        if len(rounds) <= self.max_rounds:
            return
        self._detach(run, owner, cid, [m.id for r in rounds[:drop_rounds(self.max_rounds)] for m in r])

    @staticmethod
    def _detach(run: Run, owner: str, cid: str, item_ids: list[str]) -> None:
        for item_id in item_ids:
            run("UPDATE items SET conversation_id = NULL WHERE owner = ? AND conversation_id = ? AND id = ? "
                "AND response_id IS NOT NULL", (owner, cid, item_id))
            run("DELETE FROM items WHERE owner = ? AND conversation_id = ? AND id = ?", (owner, cid, item_id))

    @staticmethod
    def _messages(run: Run, owner: str, cid: str) -> list[Message]:
        rows = run(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND conversation_id = ? ORDER BY seq",
                   (owner, cid)).fetchall()
        return [_message(r) for r in rows]

    # ---- who owns what ----
    def owner_secret(self) -> bytes:
        """The database's own secret for owner ids (server/gate.py), made once, on first use."""
        with self._transaction(write=True) as run:
            run("INSERT INTO service_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                ("owner_key", secrets.token_hex(32)))
            return bytes.fromhex(run("SELECT value FROM service_secrets WHERE name = ?", ("owner_key",)).fetchone()[0])

    def adopt_owners(self, renames: dict[str, str]) -> None:
        """Move what old owner ids hold to new ones (an owner id derives from a key the service
        knows, so it can be recomputed; the ids of keys no longer configured stay as they are)."""
        with self._transaction(write=True) as run:
            for old, new in renames.items():
                for table in ("conversations", "items", "responses"):
                    run(f"UPDATE {table} SET owner = ? WHERE owner = ?", (new, old))

    # ---- conversations as /chat and the Responses API use them ----
    def messages(self, owner: str, cid: str) -> list[Message]:
        """The conversation's kept messages, oldest first."""
        with self._transaction() as run:
            return self._messages(run, owner, cid)

    def add_turn(self, owner: str, cid: str | None, inputs: list[Message], outputs: list[Message],
                 response: dict | None = None, create: bool = True) -> list[Message]:
        """Store a completed turn in one transaction: its input and output items (in conversation
        `cid` if given) and the response object (if given); then apply the window. Without
        `create`, a conversation deleted meanwhile stays deleted: NotFound, and nothing is stored."""
        now = time.time()
        response_id = response["id"] if response else None
        with self._transaction(write=True) as run:
            if cid is not None:
                self._use_conversation(run, owner, cid, now, create)
            stored = self._insert(run, owner, cid, inputs, response_id, now)
            stored += self._insert(run, owner, cid, outputs, response_id, now, is_output=True)
            if response is not None:
                run("INSERT INTO responses (owner, id, previous_response_id, conversation_id, body, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (owner, response_id, response.get("previous_response_id"), cid, json.dumps(response), now))
            if cid is not None:
                self._trim(run, owner, cid)
        return stored

    def reset(self, owner: str, cid: str) -> int:
        """Empty a conversation; returns how many rounds it had."""
        with self._transaction(write=True) as run:
            messages = self._messages(run, owner, cid)
            self._detach(run, owner, cid, [m.id for m in messages])
        return len(group_rounds(messages))

    def count_conversations(self, owner: str | None = None) -> int:
        """Conversations holding at least one message: the owner's, or (None) every owner's."""
        where, params = ("c.owner = ? AND ", (owner,)) if owner is not None else ("", ())
        with self._transaction() as run:
            return run(f"SELECT COUNT(*) FROM conversations c WHERE {where}EXISTS (SELECT 1 FROM items i WHERE "
                       "i.owner = c.owner AND i.conversation_id = c.id)", params).fetchone()[0]

    # ---- the Conversations API ----
    def create_conversation(self, owner: str, metadata: dict, items: list[Message]) -> dict:
        cid, now = new_id("conv"), time.time()
        with self._transaction(write=True) as run:
            self._ensure_conversation(run, owner, cid, now, metadata)
            self._insert(run, owner, cid, items, None, now)
        return self.conversation(owner, cid)

    def conversation(self, owner: str, cid: str) -> dict | None:
        with self._transaction() as run:
            row = run("SELECT id, created_at, updated_at, metadata FROM conversations WHERE owner = ? AND id = ?",
                      (owner, cid)).fetchone()
            if row is None:
                return None
            count = run("SELECT COUNT(*) FROM items WHERE owner = ? AND conversation_id = ?",
                        (owner, cid)).fetchone()[0]
        return {"id": row[0], "created_at": row[1], "updated_at": row[2], "metadata": json.loads(row[3]),
                "messages": count}

    def update_metadata(self, owner: str, cid: str, metadata: dict) -> dict | None:
        with self._transaction(write=True) as run:
            run("UPDATE conversations SET metadata = ? WHERE owner = ? AND id = ?", (json.dumps(metadata), owner, cid))
        return self.conversation(owner, cid)

    def delete_conversation(self, owner: str, cid: str) -> bool:
        with self._transaction(write=True) as run:
            self._detach(run, owner, cid, [m.id for m in self._messages(run, owner, cid)])
            return run("DELETE FROM conversations WHERE owner = ? AND id = ?", (owner, cid)).rowcount > 0

    def list_conversations(self, owner: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        """Newest-used first, with message counts and titles; `after` is the last id of the previous
        page (an unknown one starts from the top). One page is read, from the index, however many
        conversations the owner has."""
        where, params = "c.owner = ?", [owner]
        with self._transaction() as run:
            cursor = after and run("SELECT updated_at, id FROM conversations WHERE owner = ? AND id = ?",
                                   (owner, after)).fetchone()
            if cursor:
                where += " AND (c.updated_at < ? OR (c.updated_at = ? AND c.id > ?))"
                params += [cursor[0], cursor[0], cursor[1]]
            rows = run(
                "SELECT c.id, c.created_at, c.updated_at, (SELECT COUNT(*) FROM items i WHERE i.owner = c.owner "
                "AND i.conversation_id = c.id), (SELECT substr(i.text, 1, 200) FROM items i WHERE i.owner = c.owner "
                "AND i.conversation_id = c.id AND i.role = 'user' ORDER BY i.seq LIMIT 1) "
                f"FROM conversations c WHERE {where} ORDER BY c.updated_at DESC, c.id LIMIT ?",
                (*params, limit + 1)).fetchall()
        page = [{"id": r[0], "created_at": r[1], "last_used_at": r[2], "messages": r[3], "title": title_of(r[4])}
                for r in rows[:limit]]
        return page, len(rows) > limit

    def list_items(self, owner: str, cid: str, after: str | None, limit: int, order: str,
                   ) -> tuple[list[Message], bool]:
        return page_of(self.messages(owner, cid), after, limit, order)

    def add_items(self, owner: str, cid: str, items: list[Message]) -> list[Message]:
        """Append items to an existing conversation (NotFound if there is none), then apply the
        window, as a turn does: a conversation keeps at most `max_rounds` rounds, whatever API wrote
        them."""
        now = time.time()
        with self._transaction(write=True) as run:
            self._use_conversation(run, owner, cid, now, create=False)
            added = self._insert(run, owner, cid, items, None, now)
            self._trim(run, owner, cid)
            kept = {m.id for m in self._messages(run, owner, cid)}
        return [m for m in added if m.id in kept]

    def item(self, owner: str, cid: str, item_id: str) -> Message | None:
        with self._transaction() as run:
            row = run(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND conversation_id = ? AND id = ?",
                      (owner, cid, item_id)).fetchone()
        return _message(row) if row else None

    def delete_item(self, owner: str, cid: str, item_id: str) -> bool:
        with self._transaction(write=True) as run:
            found = run("SELECT 1 FROM items WHERE owner = ? AND conversation_id = ? AND id = ?",
                        (owner, cid, item_id)).fetchone() is not None
            self._detach(run, owner, cid, [item_id])
        return found

    # ---- stored responses ----
    def response(self, owner: str, rid: str) -> dict | None:
        with self._transaction() as run:
            row = run("SELECT body FROM responses WHERE owner = ? AND id = ?", (owner, rid)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_response(self, owner: str, rid: str) -> bool:
        with self._transaction(write=True) as run:
            run("DELETE FROM items WHERE owner = ? AND response_id = ? AND conversation_id IS NULL", (owner, rid))
            run("UPDATE items SET response_id = NULL WHERE owner = ? AND response_id = ?", (owner, rid))
            return run("DELETE FROM responses WHERE owner = ? AND id = ?", (owner, rid)).rowcount > 0

    def response_items(self, owner: str, rid: str, output: bool) -> list[Message]:
        with self._transaction() as run:
            rows = run(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND response_id = ? AND is_output = ? "
                       "ORDER BY seq", (owner, rid, int(output))).fetchall()
        return [_message(r) for r in rows]

    def input_items(self, owner: str, rid: str, dropped_rounds: int = 0) -> list[Message]:
        """What response `rid` was given: the items of the chain before it (less the oldest rounds
        that truncation left out), then its own inputs."""
        with self._transaction() as run:
            row = run("SELECT previous_response_id FROM responses WHERE owner = ? AND id = ?", (owner, rid)).fetchone()
        earlier = group_rounds(self.chain(owner, row[0]) if row and row[0] else [])[dropped_rounds:]
        return [m for r in earlier for m in r] + self.response_items(owner, rid, output=False)

    def chain(self, owner: str, rid: str) -> list[Message]:
        """Every input and output item of the chain of responses that ends at `rid`, oldest first."""
        with self._transaction() as run:
            ids, current = [], rid
            while current and current not in ids:
                ids.append(current)
                row = run("SELECT previous_response_id FROM responses WHERE owner = ? AND id = ?",
                          (owner, current)).fetchone()
                current = row[0] if row else None
            messages = []
            for response_id in reversed(ids):
                rows = run(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND response_id = ? ORDER BY seq",
                           (owner, response_id)).fetchall()
                messages += [_message(r) for r in rows]
        return messages


def title_of(first_message: str | None, words: int = 8) -> str:
    """A conversation's first words, for a list of conversations; empty before its first message."""
    if not first_message:
        return ""
    head = first_message.split()
    return " ".join(head[:words]) + (" ..." if len(head) > words else "")


def page_of(items: list[Message], after: str | None, limit: int, order: str) -> tuple[list[Message], bool]:
    ordered = items if order == "asc" else list(reversed(items))
    ids = [m.id for m in ordered]
    start = ids.index(after) + 1 if after in ids else 0
    return ordered[start:start + limit], start + limit < len(ordered)
