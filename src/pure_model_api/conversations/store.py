"""Conversations in SQLite (standard library sqlite3, WAL mode).

A conversation is named by (owner, session_id): the owner is derived from the API key, so one key
never sees another key's conversations. Rows are rounds, stored only once their reply is complete.
At most `max_rounds` rounds of a conversation are kept; past that, the oldest half of the window
goes at once (history.py says why).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from pure_model_api.conversations.history import Round, drop_rounds

SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    session_id TEXT NOT NULL,
    user_message TEXT NOT NULL,
    reply TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rounds_by_conversation ON rounds (owner, session_id, id);
"""


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
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def rounds(self, owner: str, session_id: str) -> list[Round]:
        """The kept rounds of a conversation, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT user_message, reply FROM rounds WHERE owner = ? AND session_id = ? "
                "ORDER BY id DESC LIMIT ?", (owner, session_id, self.max_rounds)).fetchall()
        return [Round(user, reply) for user, reply in reversed(rows)]

    def add_round(self, owner: str, session_id: str, new_round: Round,
                  prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Store a completed round; past `max_rounds`, drop the oldest `drop_rounds` at once."""
        keep = self.max_rounds + 1 - drop_rounds(self.max_rounds)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO rounds (owner, session_id, user_message, reply, prompt_tokens, completion_tokens, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (owner, session_id, new_round.user, new_round.assistant, prompt_tokens, completion_tokens,
                 time.time()))
            count = self._db.execute("SELECT COUNT(*) FROM rounds WHERE owner = ? AND session_id = ?",
                                     (owner, session_id)).fetchone()[0]
            if count > self.max_rounds:
                self._db.execute(
                    "DELETE FROM rounds WHERE owner = ? AND session_id = ? AND id <= ("
                    "SELECT id FROM rounds WHERE owner = ? AND session_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (owner, session_id, owner, session_id, keep))

    def reset(self, owner: str, session_id: str) -> int:
        """Forget a conversation; returns how many rounds it had."""
        with self._lock, self._db:
            cursor = self._db.execute("DELETE FROM rounds WHERE owner = ? AND session_id = ?", (owner, session_id))
        return cursor.rowcount

    def count_conversations(self) -> int:
        with self._lock:
            query = "SELECT COUNT(*) FROM (SELECT DISTINCT owner, session_id FROM rounds)"
            return self._db.execute(query).fetchone()[0]
