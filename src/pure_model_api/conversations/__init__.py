"""Conversation history: the SQLite store and the history rules. No torch here."""

from pure_model_api.conversations.history import Message, Round, fit_to_context, group_rounds, messages_of
from pure_model_api.conversations.store import ConversationStore

__all__ = ["ConversationStore", "Message", "Round", "fit_to_context", "group_rounds", "messages_of"]
