"""The SQLite store: one file (WAL mode), the default. One connection, shared by the event loop and
worker threads under a lock; writes take the database's write lock at once (BEGIN IMMEDIATE).

The schema and its migrations are schema.py's, shared with PostgreSQL; a version 1 database (a
`rounds` table) is converted in place on open. Several replicas need a database they all reach:
postgres_store.py."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from pure_model_api.conversations import schema
from pure_model_api.conversations.history import Message
from pure_model_api.conversations.store import ConversationStore
from pure_model_api.errors import StoreUnavailable


@contextlib.contextmanager
def _available(path: str):
    """A database that is locked by another process past the busy timeout, or that cannot be
    written (a full disk, a read-only file): a 503 the client may retry, never a 500."""
    try:
        yield
    except sqlite3.OperationalError as error:
        raise StoreUnavailable(f"the conversation database '{path}' is unavailable: {error}") from error


class SqliteStore(ConversationStore):
    kind = "sqlite"

    def __init__(self, path: str | Path, max_rounds: int = 20):
        super().__init__(max_rounds)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # a process kill loses nothing committed
            with self._lock:
                self._migrate()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open the SQLite database '{self.path}': {error}") from error

    @contextlib.contextmanager
    def _connect(self, write: bool):
        """One shared connection, one caller at a time. A write is one transaction; whatever fails
        in it, COMMIT included (SQLITE_BUSY from another process on the same file, a full disk),
        rolls it back, so the connection is never left inside a transaction for later writes."""
        with self._lock, _available(self.path):
            if not write:
                yield self._db.execute
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db.execute
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        """user_version is one ahead of the migrations applied (version 1 was the rounds table)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.LATEST:
            return
        run = self._db.execute
        run("BEGIN IMMEDIATE")
        for number, statements in schema.pending("sqlite", set(range(1, version))):
            for statement in statements:
                run(statement)
            run(f"PRAGMA user_version = {number + 1}")
        if run("SELECT 1 FROM sqlite_master WHERE name = 'rounds'").fetchone():  # version 1: a row per round
            rows = run("SELECT owner, session_id, user_message, reply, created_at FROM rounds ORDER BY id").fetchall()
            for owner, session, user, reply, created in rows:
                self._ensure_conversation(run, owner, session, created)
                self._insert(run, owner, session, [Message("user", user), Message("assistant", reply)], None, created)
            run("DROP TABLE rounds")
        run("COMMIT")
