"""Conversation history: the SQLite store and trimming. No torch here."""

from pure_model_api.conversations.history import Round, fit_to_context, messages_of
from pure_model_api.conversations.store import ConversationStore

__all__ = ["ConversationStore", "Round", "fit_to_context", "messages_of"]
