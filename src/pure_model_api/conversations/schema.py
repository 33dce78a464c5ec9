"""The store's schema: one list of migrations that SQLite and PostgreSQL both run, with the few
words the two dialects spell differently in `DIALECTS` ($real, $serial in the SQL).

A database records the migrations it has: PostgreSQL in a `schema_migrations` table (one row per
version), SQLite in PRAGMA user_version, which is one ahead of the migrations applied because
SQLite's version 1 was the old `rounds` table (sqlite_store.py converts it after migration 1).
A migration, once released, is never edited: a change to the schema is a new one at the end."""

from __future__ import annotations

from collections.abc import Iterator
from string import Template

DIALECTS = {
    "sqlite": {"real": "REAL", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"real": "DOUBLE PRECISION", "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
}

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
    CREATE TABLE conversations (
        owner TEXT NOT NULL, id TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
        created_at $real NOT NULL, updated_at $real NOT NULL, PRIMARY KEY (owner, id));
    CREATE TABLE items (
        seq $serial, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
        conversation_id TEXT, response_id TEXT, is_output INTEGER NOT NULL DEFAULT 0,
        role TEXT NOT NULL, text TEXT NOT NULL, created_at $real NOT NULL);
    CREATE INDEX items_by_conversation ON items (owner, conversation_id, seq);
    CREATE INDEX items_by_response ON items (owner, response_id, seq);
    CREATE TABLE responses (
        owner TEXT NOT NULL, id TEXT NOT NULL, previous_response_id TEXT, conversation_id TEXT,
        body TEXT NOT NULL, created_at $real NOT NULL, PRIMARY KEY (owner, id))"""),
    (2, "CREATE INDEX conversations_by_use ON conversations (owner, updated_at)"),  # /sessions pages
    (3, "CREATE TABLE service_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)"),  # owner ids' key
    # what an item carries beside its role and text, as JSON: a function call's call_id and name
    (4, "ALTER TABLE items ADD COLUMN data TEXT"),
]
LATEST = MIGRATIONS[-1][0]


def pending(dialect: str, applied: set[int]) -> Iterator[tuple[int, list[str]]]:
    """(version, its statements in the dialect) for each migration not yet applied, in order."""
    words = DIALECTS[dialect]
    for version, sql in MIGRATIONS:
        if version not in applied:
            yield version, [s.strip() for s in Template(sql).substitute(words).split(";") if s.strip()]
