"""The chat service: history -> prompt -> engine -> stored round.

Calls on one conversation run one after the other, in arrival order (a FIFO lock per
conversation); calls on different conversations never wait for each other's bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pure_model_api.conversations import ConversationStore, Round, fit_to_context, messages_of
from pure_model_api.conversations.history import fit_step
from pure_model_api.engine.params import Finished, SamplingParams, TextDelta
from pure_model_api.errors import BadRequest, ContextLengthExceeded, ModelLoading


@dataclass(frozen=True)
class ChatResult:
    message: str
    response: str
    session_id: str
    finish: Finished


class GenerationObserver:
    """What the service reports about each generation; server/metrics.py implements it."""

    def generation_finished(self, finished: Finished) -> None: ...


class ConversationLocks:
    """One FIFO asyncio.Lock per live conversation, dropped when nobody holds or waits for it."""

    def __init__(self):
        self._locks: dict[tuple[str, str], list] = {}  # key -> [lock, holders and waiters]

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]):
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]


class ChatService:
    def __init__(self, store: ConversationStore, system_prompt: str | None = None,
                 observer: GenerationObserver | None = None):
        self.store = store
        self.system_prompt = system_prompt
        self.observer = observer or GenerationObserver()
        self.engine = None  # set once the model has loaded
        self.locks = ConversationLocks()
        self.requests_served = 0
        self.started_at = time.time()

    def require_engine(self):
        if self.engine is None:
            raise ModelLoading()
        return self.engine

    # ---- the documented /chat conversation ----
    async def chat(self, owner: str, session_id: str, message: str, params: SamplingParams) -> ChatResult:
        result = None
        async with contextlib.aclosing(self.chat_stream(owner, session_id, message, params)) as items:
            async for item in items:
                if isinstance(item, ChatResult):
                    result = item
        return result

    async def chat_stream(self, owner: str, session_id: str, message: str,
                          params: SamplingParams) -> AsyncIterator[TextDelta | ChatResult]:
        """Text deltas, then the ChatResult. The round is stored only when the reply completes."""
        engine = self.require_engine()
        async with self.locks.hold((owner, session_id)):
            rounds = await asyncio.to_thread(self.store.rounds, owner, session_id)
            prompt_ids = await asyncio.to_thread(self._fit_prompt, engine, rounds, message, params.max_tokens)
            finished = None
            async with contextlib.aclosing(self.stream(self.submit(prompt_ids, params))) as events:
                async for event in events:
                    if isinstance(event, Finished):
                        finished = event
                    else:
                        yield event
            await asyncio.to_thread(self.store.add_round, owner, session_id, Round(message, finished.text),
                                    finished.prompt_tokens, finished.completion_tokens)
        yield ChatResult(message=message, response=finished.text, session_id=session_id, finish=finished)

    def _fit_prompt(self, engine, rounds: list[Round], message: str, max_tokens: int) -> list[int]:
        """The newest rounds that fit the context beside the new message and max_tokens, starting
        at a step of `fit_step` rounds so that the prompt's beginning stays put between turns."""
        limit = engine.context_length
        if max_tokens >= limit:
            raise BadRequest(f"max_tokens is {max_tokens}, beyond the model's context of {limit} tokens",
                             param="max_tokens")
        prompts: dict[int, list[int]] = {}

        def fits(kept: list[Round]) -> bool:
            ids = engine.render_chat(messages_of(kept, self.system_prompt, message))
            prompts[len(kept)] = ids
            return len(ids) + max_tokens <= limit

        kept = fit_to_context(rounds, fits, fit_step(self.store.max_rounds))
        if kept is None:
            raise ContextLengthExceeded(
                f"the message needs {len(prompts[0])} prompt tokens and max_tokens is {max_tokens}: together "
                f"{len(prompts[0]) + max_tokens}, beyond the model's context of {limit} tokens")
        return prompts[len(kept)]

    # ---- shared by every surface ----
    def submit(self, prompt_ids: list[int], params: SamplingParams):
        """Queue a generation now (so a full queue or an oversized prompt fails here, before any
        output); read it with `stream`."""
        return self.require_engine().submit(prompt_ids, params)

    async def stream(self, handle) -> AsyncIterator[TextDelta | Finished]:
        async with contextlib.aclosing(handle.events()) as events:
            async for event in events:
                if isinstance(event, Finished):
                    self.requests_served += 1
                    self.observer.generation_finished(event)
                yield event

    def render_messages(self, messages: list[dict]) -> list[int]:
        return self.require_engine().render_chat(messages)

    def encode(self, text: str) -> list[int]:
        return self.require_engine().encode(text)

    async def reset(self, owner: str, session_id: str) -> int:
        async with self.locks.hold((owner, session_id)):
            return await asyncio.to_thread(self.store.reset, owner, session_id)

    async def conversation_length(self, owner: str, session_id: str) -> int:
        """Messages (not rounds) in the conversation: 4 after two exchanges."""
        return 2 * len(await asyncio.to_thread(self.store.rounds, owner, session_id))
