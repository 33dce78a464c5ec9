"""Conversation history: the store (SQLite, or PostgreSQL for several replicas) and the history
rules. No torch here."""

from pure_model_api.conversations.history import Message, Round, fit_to_context, group_rounds, messages_of
from pure_model_api.conversations.sqlite_store import SqliteStore
from pure_model_api.conversations.store import ConversationStore, open_store

__all__ = ["ConversationStore", "Message", "Round", "SqliteStore", "fit_to_context", "group_rounds", "messages_of",
           "open_store"]
