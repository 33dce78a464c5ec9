"""Conversation history: the store (SQLite, or PostgreSQL for several replicas) and the history
rules. No torch here."""

from pure_model_api.conversations.history import Message, Round, fit_to_context, group_rounds, messages_of
from pure_model_api.conversations.sqlite_store import SqliteStore
from pure_model_api.conversations.store import ConversationStore, new_id

__all__ = ["ConversationStore", "Message", "Round", "SqliteStore", "fit_to_context", "group_rounds", "messages_of",
           "new_id", "open_store"]


def open_store(db: str, max_rounds: int = 20) -> ConversationStore:
    """`postgresql://...` is a PostgreSQL store (psycopg imported only then); anything else a SQLite
    file (or `:memory:`). Here rather than in store.py, which the two databases' modules import."""
    if db.startswith(("postgresql://", "postgres://")):
        from pure_model_api.conversations.postgres_store import PostgresStore

        return PostgresStore(db, max_rounds)
    return SqliteStore(db, max_rounds)
