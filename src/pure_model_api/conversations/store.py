"""Conversations, their message items and stored responses, in SQLite (WAL mode).

One store, several views: a /chat session is a conversation (its id is the session id), the
Conversations API lists and edits the same items, and a stored response records its input and
output items (in its conversation, if it has one). Everything is keyed by owner: the owner is
derived from the API key, so one key never sees another key's data.

Items are written only once a reply is complete, in one transaction with the response (if any)
and the window's trimming: at most `max_rounds` rounds per conversation, the oldest half dropped
at once past that (history.py says why). The schema is versioned with PRAGMA user_version;
version 1 (a `rounds` table) is migrated in place on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from pure_model_api.conversations.history import Message, drop_rounds, group_rounds

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    owner TEXT NOT NULL, id TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (owner, id));
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    conversation_id TEXT, response_id TEXT, is_output INTEGER NOT NULL DEFAULT 0,
    role TEXT NOT NULL, text TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS items_by_conversation ON items (owner, conversation_id, seq);
CREATE INDEX IF NOT EXISTS items_by_response ON items (owner, response_id, seq);
CREATE TABLE IF NOT EXISTS responses (
    owner TEXT NOT NULL, id TEXT NOT NULL, previous_response_id TEXT, conversation_id TEXT,
    body TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (owner, id));
"""
ITEM_COLUMNS = "id, role, text, response_id, created_at"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _message(row) -> Message:
    return Message(id=row[0], role=row[1], text=row[2], response_id=row[3], created_at=row[4])


class ConversationStore:
    def __init__(self, path: str | Path, max_rounds: int = 20):
        self.path = str(path)
        self.max_rounds = max_rounds
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection, used from the event loop and worker threads
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        has_rounds = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rounds'").fetchone()
        if has_rounds:  # version 1: one row per /chat round
            rows = self._db.execute("SELECT owner, session_id, user_message, reply, created_at FROM rounds "
                                    "ORDER BY id").fetchall()
            for owner, session, user, reply, created in rows:
                self._ensure_conversation(owner, session, created)
                self._insert(owner, session, [Message("user", user), Message("assistant", reply)], None, created)
            self._db.execute("DROP TABLE rounds")
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writing (callers hold self._lock) ----
    def _ensure_conversation(self, owner: str, cid: str, now: float, metadata: dict | None = None) -> None:
        self._db.execute("INSERT INTO conversations (owner, id, metadata, created_at, updated_at) VALUES "
                         "(?, ?, ?, ?, ?) ON CONFLICT (owner, id) DO UPDATE SET updated_at = excluded.updated_at",
                         (owner, cid, json.dumps(metadata or {}), now, now))

    def _insert(self, owner: str, cid: str | None, messages: list[Message], response_id: str | None,
                now: float, is_output: bool = False) -> list[Message]:
        stored = []
        for m in messages:
            item = Message(role=m.role, text=m.text, id=m.id or new_id("msg"), response_id=response_id,
                           created_at=now)
            self._db.execute("INSERT INTO items (id, owner, conversation_id, response_id, is_output, role, text, "
                             "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (item.id, owner, cid, response_id, int(is_output), item.role, item.text, now))
            stored.append(item)
        return stored

    def _trim(self, owner: str, cid: str) -> None:
        """Past the window, drop the oldest rounds at once (from the conversation; a stored
        response keeps its own record of the items)."""
        rounds = group_rounds(self._messages(owner, cid))
        if len(rounds) <= self.max_rounds:
            return
        dropped = [m.id for r in rounds[:drop_rounds(self.max_rounds)] for m in r]
        self._detach(owner, cid, dropped)

    def _detach(self, owner: str, cid: str, item_ids: list[str]) -> None:
        for item_id in item_ids:
            self._db.execute("UPDATE items SET conversation_id = NULL WHERE owner = ? AND conversation_id = ? "
                             "AND id = ? AND response_id IS NOT NULL", (owner, cid, item_id))
            self._db.execute("DELETE FROM items WHERE owner = ? AND conversation_id = ? AND id = ?",
                             (owner, cid, item_id))

    def _messages(self, owner: str, cid: str) -> list[Message]:
        rows = self._db.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND conversation_id = ? "
                                "ORDER BY seq", (owner, cid)).fetchall()
        return [_message(r) for r in rows]

    # ---- conversations as /chat and the Responses API use them ----
    def messages(self, owner: str, cid: str) -> list[Message]:
        """The conversation's kept messages, oldest first."""
        with self._lock:
            return self._messages(owner, cid)

    def add_turn(self, owner: str, cid: str | None, inputs: list[Message], outputs: list[Message],
                 response: dict | None = None) -> list[Message]:
        """Store a completed turn in one transaction: its input and output items (in conversation
        `cid` if given) and the response object (if given); then apply the window."""
        now = time.time()
        response_id = response["id"] if response else None
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if cid is not None:
                self._ensure_conversation(owner, cid, now)
            stored = self._insert(owner, cid, inputs, response_id, now)
            stored += self._insert(owner, cid, outputs, response_id, now, is_output=True)
            if response is not None:
                self._db.execute("INSERT INTO responses (owner, id, previous_response_id, conversation_id, body, "
                                 "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                                 (owner, response_id, response.get("previous_response_id"), cid,
                                  json.dumps(response), now))
            if cid is not None:
                self._trim(owner, cid)
        return stored

    def reset(self, owner: str, cid: str) -> int:
        """Empty a conversation; returns how many rounds it had."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            messages = self._messages(owner, cid)
            self._detach(owner, cid, [m.id for m in messages])
        return len(group_rounds(messages))

    def count_conversations(self) -> int:
        with self._lock:
            query = ("SELECT COUNT(*) FROM conversations c WHERE EXISTS (SELECT 1 FROM items i WHERE "
                     "i.owner = c.owner AND i.conversation_id = c.id)")
            return self._db.execute(query).fetchone()[0]

    # ---- the Conversations API ----
    def create_conversation(self, owner: str, metadata: dict, items: list[Message]) -> dict:
        cid, now = new_id("conv"), time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._ensure_conversation(owner, cid, now, metadata)
            self._insert(owner, cid, items, None, now)
        return self.conversation(owner, cid)

    def conversation(self, owner: str, cid: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT id, created_at, updated_at, metadata FROM conversations "
                                   "WHERE owner = ? AND id = ?", (owner, cid)).fetchone()
            if row is None:
                return None
            count = self._db.execute("SELECT COUNT(*) FROM items WHERE owner = ? AND conversation_id = ?",
                                     (owner, cid)).fetchone()[0]
        return {"id": row[0], "created_at": row[1], "updated_at": row[2], "metadata": json.loads(row[3]),
                "messages": count}

    def update_metadata(self, owner: str, cid: str, metadata: dict) -> dict | None:
        with self._lock, self._db:
            self._db.execute("UPDATE conversations SET metadata = ? WHERE owner = ? AND id = ?",
                             (json.dumps(metadata), owner, cid))
        return self.conversation(owner, cid)

    def delete_conversation(self, owner: str, cid: str) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._detach(owner, cid, [m.id for m in self._messages(owner, cid)])
            cursor = self._db.execute("DELETE FROM conversations WHERE owner = ? AND id = ?", (owner, cid))
        return cursor.rowcount > 0

    def list_conversations(self, owner: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        """Newest-used first, with message counts; `after` is the last id of the previous page."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.id, c.created_at, c.updated_at, (SELECT COUNT(*) FROM items i WHERE i.owner = c.owner "
                "AND i.conversation_id = c.id), (SELECT substr(i.text, 1, 200) FROM items i WHERE i.owner = c.owner "
                "AND i.conversation_id = c.id AND i.role = 'user' ORDER BY i.created_at, i.rowid LIMIT 1) "
                "FROM conversations c WHERE c.owner = ? ORDER BY c.updated_at DESC, c.id", (owner,)).fetchall()
        ids = [r[0] for r in rows]
        start = ids.index(after) + 1 if after in ids else 0
        page = [{"id": r[0], "created_at": r[1], "last_used_at": r[2], "messages": r[3], "title": title_of(r[4])}
                for r in rows[start:start + limit]]
        return page, start + limit < len(rows)

    def list_items(self, owner: str, cid: str, after: str | None, limit: int, order: str,
                   ) -> tuple[list[Message], bool]:
        items = self.messages(owner, cid)
        return page_of(items, after, limit, order)

    def add_items(self, owner: str, cid: str, items: list[Message]) -> list[Message]:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._ensure_conversation(owner, cid, now)
            return self._insert(owner, cid, items, None, now)

    def item(self, owner: str, cid: str, item_id: str) -> Message | None:
        return next((m for m in self.messages(owner, cid) if m.id == item_id), None)

    def delete_item(self, owner: str, cid: str, item_id: str) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            found = any(m.id == item_id for m in self._messages(owner, cid))
            self._detach(owner, cid, [item_id])
        return found

    # ---- stored responses ----
    def response(self, owner: str, rid: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE owner = ? AND id = ?", (owner, rid)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_response(self, owner: str, rid: str) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM items WHERE owner = ? AND response_id = ? AND conversation_id IS NULL",
                             (owner, rid))
            self._db.execute("UPDATE items SET response_id = NULL WHERE owner = ? AND response_id = ?", (owner, rid))
            cursor = self._db.execute("DELETE FROM responses WHERE owner = ? AND id = ?", (owner, rid))
        return cursor.rowcount > 0

    def response_items(self, owner: str, rid: str, output: bool) -> list[Message]:
        with self._lock:
            rows = self._db.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND response_id = ? "
                                    "AND is_output = ? ORDER BY seq", (owner, rid, int(output))).fetchall()
        return [_message(r) for r in rows]

    def input_items(self, owner: str, rid: str, dropped_rounds: int = 0) -> list[Message]:
        """What response `rid` was given: the items of the chain before it (less the oldest rounds
        that truncation left out), then its own inputs."""
        with self._lock:
            row = self._db.execute("SELECT previous_response_id FROM responses WHERE owner = ? AND id = ?",
                                   (owner, rid)).fetchone()
        earlier = group_rounds(self.chain(owner, row[0]) if row and row[0] else [])[dropped_rounds:]
        return [m for r in earlier for m in r] + self.response_items(owner, rid, output=False)

    def chain(self, owner: str, rid: str) -> list[Message]:
        """Every input and output item of the chain of responses that ends at `rid`, oldest first."""
        with self._lock:
            ids, current = [], rid
            while current and current not in ids:
                ids.append(current)
                row = self._db.execute("SELECT previous_response_id FROM responses WHERE owner = ? AND id = ?",
                                       (owner, current)).fetchone()
                current = row[0] if row else None
            messages = []
            for response_id in reversed(ids):
                rows = self._db.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE owner = ? AND response_id = ? "
                                        "ORDER BY seq", (owner, response_id)).fetchall()
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
