"""The chat service: conversation -> prompt -> engine -> stored turn.

Calls on one conversation run one after the other, in arrival order (a FIFO lock per
conversation); calls on different conversations never wait for each other's bookkeeping.
A turn is stored only when its reply is complete: a failed or cancelled generation stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from pure_model_api.conversations import ConversationStore, Message, fit_to_context, group_rounds, messages_of
from pure_model_api.conversations.history import drop_rounds, fit_step, unanswered_results
from pure_model_api.conversations.store import page_of
from pure_model_api.engine import ToolCallGeneration, ToolRequest
from pure_model_api.engine.params import Finished, SamplingParams, TextDelta, ToolCallDelta
from pure_model_api.errors import BadRequest, ContextLengthExceeded, ModelLoading, NotFound, ServerBusy

log = logging.getLogger(__name__)


class ResponseDraft(Protocol):
    """A Responses API answer still to be made (protocol/responses.py builds it)."""

    output_id: str

    def finished(self, finished: Finished, outputs: list[Message], dropped_rounds: int) -> dict: ...


@dataclass
class Turn:
    """One generation, on every surface: the history is conversation `conversation_id` or the
    chain of responses ending at `previous_response_id` (or nothing: /v1's stateless calls);
    `inputs` are the new items."""

    owner: str
    inputs: list[Message]
    params: SamplingParams
    conversation_id: str | None = None
    previous_response_id: str | None = None
    system: str | None = None
    create: bool = True  # a turn on a conversation that does not exist starts it (/chat), else a 404
    truncate: bool = True  # drop the oldest rounds to fit the context, else a 400
    raw_prompt: str | None = None  # /v1/completions: this text is the whole prompt (no template, no history)
    fill_context: bool = False  # max_tokens is what room the context leaves (OpenAI's default on /v1)
    response: ResponseDraft | None = None  # the Responses API's answer, made when the turn ends
    store_response: bool = False  # keep the response body (and its items) for later retrieval
    tools: ToolRequest | None = None  # functions the reply may call (engine/tools.py)


@dataclass(frozen=True)
class TurnResult:
    finish: Finished
    outputs: list[Message]
    response: dict | None = None
    rounds_dropped: int = 0
    stored: list[Message] = field(default_factory=list)


async def last_of(stream: AsyncIterator, kind: type):
    """Run `stream` to its end (closing it however that comes) and return its item of type `kind`:
    the Finished of a generation, the TurnResult of a turn."""
    found = None
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            if isinstance(item, kind):
                found = item
    return found


async def merged(streams: list[AsyncIterator]) -> AsyncIterator[tuple[int, object]]:
    """The streams' items as they come, each with its stream's index; the first failure ends all."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int, stream: AsyncIterator) -> None:
        try:
            async with contextlib.aclosing(stream) as items:
                async for item in items:
                    queue.put_nowait((index, item))
            queue.put_nowait((index, done))
        except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it
            queue.put_nowait((index, error))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is done:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def output_items(finished: Finished, message_id: str) -> list[Message]:
    """A reply as items: its text as an assistant message (where it has text, or no calls), then
    each call as a function_call item (an id `fc_...` that matches its call_id's)."""
    items = [Message("assistant", finished.text, id=message_id)] if finished.text or not finished.tool_calls else []
    return items + [Message("function_call", call.arguments, id="fc_" + call.id.removeprefix("call_"),
                            extra={"call_id": call.id, "name": call.name}) for call in finished.tool_calls]


class GenerationObserver:
    """What the service reports about each generation; server/metrics.py implements it."""

    def generation_finished(self, finished: Finished) -> None: ...


class ConversationLocks:
    """One FIFO asyncio.Lock per live conversation, dropped when nobody holds or waits for it.

    Callers waiting for a busy conversation count against `max_waiting` (the service's
    --max-queue), so one conversation cannot queue without bound: past it, a 503 at once."""

    def __init__(self, max_waiting: int | None = None):
        self._locks: dict[tuple[str, str], list] = {}  # key -> [lock, holders and waiters]
        self.max_waiting = max_waiting
        self.waiting = 0  # callers waiting for a conversation someone else holds

    @contextlib.asynccontextmanager
    async def take(self, key: tuple[str, str]):
        entry = self._locks.get(key)
        busy = entry is not None and entry[0].locked()
        if busy and self.max_waiting is not None and self.waiting >= self.max_waiting:
            raise ServerBusy()
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        self.waiting += busy
        try:
            async with entry[0]:
                self.waiting -= busy
                busy = False
                yield
        finally:
            self.waiting -= busy  # cancelled while still waiting
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]


class ChatService:
    def __init__(self, store: ConversationStore, system_prompt: str | None = None,
                 observer: GenerationObserver | None = None, max_waiting: int | None = None):
        self.store = store
        self.system_prompt = system_prompt
        self.observer = observer or GenerationObserver()
        self.engine = None  # set once the model has loaded
        self.locks = ConversationLocks(max_waiting)
        self.requests_served = 0
        self.started_at = time.time()
        self.background: set[asyncio.Task] = set()  # warm-ups after a window drop, held until done

    @contextlib.asynccontextmanager
    async def conversation_lock(self, owner: str, cid: str):
        """A conversation for one turn or edit: in this process (FIFO, bounded by --max-queue),
        then against other replicas that share the database (the store's lock)."""
        async with self.locks.take((owner, cid)), self.store.replica_lock(owner, cid):
            yield

    def require_engine(self):
        if self.engine is None:
            raise ModelLoading()
        return self.engine

    # ---- the documented /chat conversation ----
    def chat_turn(self, owner: str, session_id: str, message: str, params: SamplingParams) -> Turn:
        """A /chat round: the message on the session's conversation (started by its first round)."""
        return Turn(owner, [Message("user", message)], params, conversation_id=session_id, system=self.system_prompt)

    # ---- any turn on stored state (/chat, the Responses API) ----
    async def turn_stream(self, turn: Turn) -> AsyncIterator[TextDelta | TurnResult]:
        """Text deltas, then the TurnResult once the turn is stored."""
        engine = self.require_engine()
        cid = turn.conversation_id
        # Only a conversation is shared state: a turn without one (stateless, or continuing a
        # response, which adds a new response and changes no other) takes no lock.
        async with self.conversation_lock(turn.owner, cid) if cid is not None else contextlib.nullcontext():
            if cid is not None and not turn.create:  # checked under the lock that a DELETE takes too
                await self.conversation(turn.owner, cid, param="conversation")
            history = await asyncio.to_thread(self._history, turn)
            unanswered = unanswered_results(history, turn.inputs)
            if unanswered:
                raise BadRequest(f"a tool result answers call '{unanswered[0]}', and no call has that id here",
                                 param="input" if turn.response else "messages")
            prompt_ids, dropped, params = await asyncio.to_thread(self.fit_prompt, engine, group_rounds(history), turn)
            finished = None
            async with contextlib.aclosing(self._reply(engine, prompt_ids, params, turn.tools)) as events:
                async for event in events:
                    if isinstance(event, Finished):
                        finished = event
                    else:
                        yield event
            outputs = output_items(finished, turn.response.output_id if turn.response else "")
            response = turn.response.finished(finished, outputs, dropped) if turn.response else None
            stored = []
            kept = response if turn.store_response else None
            if turn.conversation_id is not None or kept is not None:
                stored = await asyncio.to_thread(self.store.add_turn, turn.owner, turn.conversation_id,
                                                 turn.inputs, outputs, kept, turn.create)
            if cid is not None:
                self._warm_next_window(engine, turn, len(group_rounds([*history, *turn.inputs])))
        yield TurnResult(finish=finished, outputs=outputs, response=response, rounds_dropped=dropped, stored=stored)

    async def choices_stream(self, turn: Turn, n: int) -> AsyncIterator[tuple[int, TextDelta | TurnResult]]:
        """`n` independent choices of one stateless turn (/v1's `n`), generated side by side:
        (choice index, item) as each arrives. With a seed, choice i samples with seed + i, so the
        choices differ and a request repeats. A choice that fails fails them all."""
        if n == 1:
            async with contextlib.aclosing(self.turn_stream(turn)) as items:
                async for item in items:
                    yield 0, item
            return
        engine = self.require_engine()
        if n > engine.options.max_batch_size:
            raise BadRequest(f"n is at most {engine.options.max_batch_size} here (--max-batch-size)", param="n")
        seeds = [None if turn.params.seed is None else turn.params.seed + i for i in range(n)]
        turns = [dataclasses.replace(turn, params=dataclasses.replace(turn.params, seed=seed)) for seed in seeds]
        async with contextlib.aclosing(merged([self.turn_stream(t) for t in turns])) as items:
            async for item in items:
                yield item

    def _warm_next_window(self, engine, turn: Turn, rounds: int) -> None:
        """A window move changes the prompt's beginning, and the turn after it would prefill all the
        kept rounds again. When the turn just stored (making `rounds` rounds) made the window drop
        rounds, have the engine prefill the new beginning in the background now (engine.warm): the
        next turn prefills only its own message. An engine whose warm-ups run only behind users'
        requests (llama.cpp) also builds, a round per turn, the beginning the next drop will leave
        (the system message and the rounds past the oldest `drop_rounds`), so that little is left
        to do when it comes."""
        drop = drop_rounds(self.store.max_rounds)
        dropped = rounds > self.store.max_rounds
        kept = rounds - drop if dropped else rounds
        starts = ([0] if dropped else []) + ([drop] if engine.warms_behind_requests and kept > drop else [])
        if not starts:
            return

        async def warm() -> None:
            kept_rounds = group_rounds(await asyncio.to_thread(self.store.messages, turn.owner, turn.conversation_id))
            for start in starts:
                messages = messages_of(kept_rounds[start:], turn.system)
                engine.warm(await asyncio.to_thread(engine.render_chat, messages, turn.tools))

        task = asyncio.get_running_loop().create_task(warm())
        self.background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("warming the next prompt's cache failed: %s", task.exception())

    def _reply(self, engine, prompt_ids: list[int], params: SamplingParams, tools: ToolRequest | None,
               ) -> AsyncIterator[TextDelta | ToolCallDelta | Finished]:
        """The reply's events: one generation, or, with tools, the phases of one (tool_calls.py)."""
        if tools is None:
            return self._generate(engine, prompt_ids, params)
        generation = ToolCallGeneration(engine.prompts, engine.tool_format, tools,
                                        lambda ids, p: self._generate(engine, ids, p), engine.context_length)
        return generation.events(prompt_ids, params)

    async def _generate(self, engine, prompt_ids: list[int], params: SamplingParams,
                        ) -> AsyncIterator[TextDelta | Finished]:
        constraint = await asyncio.to_thread(engine.constrain, params) if params.json_schema else None
        async with contextlib.aclosing(self.stream(engine.submit(prompt_ids, params, constraint))) as events:
            async for event in events:
                yield event

    def _history(self, turn: Turn) -> list[Message]:
        if turn.conversation_id is not None:
            return self.store.messages(turn.owner, turn.conversation_id)
        if turn.previous_response_id is not None:
            return self.store.chain(turn.owner, turn.previous_response_id)
        return []

    def fit_prompt(self, engine, rounds: list, turn: Turn) -> tuple[list[int], int, SamplingParams]:
        """The prompt, how many of the oldest rounds it leaves out to fit the context beside
        max_tokens, and the sampling parameters (max_tokens filled in where the context decides)."""
        if turn.raw_prompt is not None:
            prompt_ids, dropped = engine.encode(turn.raw_prompt), 0
        else:
            prompt_ids, dropped = self._fit_rounds(engine, rounds, turn)
        params = turn.params
        if turn.fill_context:
            params = dataclasses.replace(params, max_tokens=max(engine.context_length - len(prompt_ids), 1))
        return prompt_ids, dropped, params

    def _fit_rounds(self, engine, rounds: list, turn: Turn) -> tuple[list[int], int]:
        """History starts at a step of `fit_step` rounds, so the prompt's beginning stays put
        between turns; without `truncate`, history that does not fit is a 400."""
        limit, max_tokens = engine.context_length, turn.params.max_tokens
        if max_tokens >= limit:
            raise BadRequest(f"max_tokens is {max_tokens}, beyond the model's context of {limit} tokens",
                             param="max_tokens")
        new = turn.inputs
        prompts: dict[int, list[int]] = {}

        def fits(kept: list) -> bool:
            ids = engine.render_chat(messages_of(kept, turn.system, new), turn.tools)
            prompts[len(kept)] = ids
            return len(ids) + max_tokens <= limit

        kept = fit_to_context(rounds, fits, fit_step(self.store.max_rounds)) if turn.truncate else (
            rounds if fits(rounds) else None)
        if kept is None:
            length = prompts[0] if turn.truncate else prompts[len(rounds)]
            raise ContextLengthExceeded(
                f"the input needs {len(length)} prompt tokens and max_tokens is {max_tokens}: together "
                f"{len(length) + max_tokens}, beyond the model's context of {limit} tokens")
        return prompts[len(kept)], len(rounds) - len(kept)

    async def stream(self, handle) -> AsyncIterator[TextDelta | Finished]:
        """The engine's events, with any NUL a model writes as U+FFFD: PostgreSQL cannot store NUL in
        text, the API refuses it in what clients send, and the stored reply is the next turn's input."""
        async with contextlib.aclosing(handle.events()) as events:
            async for event in events:
                if isinstance(event, Finished):
                    event = dataclasses.replace(event, text=event.text.replace("\x00", "\ufffd"))
                    self.requests_served += 1
                    self.observer.generation_finished(event)
                elif "\x00" in event.text:
                    event = dataclasses.replace(event, text=event.text.replace("\x00", "\ufffd"))
                yield event

    # ---- edits of stored conversations: each under the conversation's lock, checked there ----
    async def delete_conversation(self, owner: str, cid: str, param: str = "conversation_id") -> None:
        async with self.conversation_lock(owner, cid):
            if not await asyncio.to_thread(self.store.delete_conversation, owner, cid):
                raise NotFound(f"conversation '{cid}' not found", param=param)

    async def add_items(self, owner: str, cid: str, items: list[Message]) -> list[Message]:
        async with self.conversation_lock(owner, cid):
            if any(m.role == "function_call_output" for m in items):
                unanswered = unanswered_results(await self.messages(owner, cid), items)
                if unanswered:
                    raise BadRequest(f"a tool result answers call '{unanswered[0]}', and no call has that id here",
                                     param="items")
            try:
                return await asyncio.to_thread(self.store.add_items, owner, cid, items)
            except NotFound as error:
                raise NotFound(error.message, param="conversation_id") from error

    async def delete_item(self, owner: str, cid: str, item_id: str) -> bool:
        async with self.conversation_lock(owner, cid):
            await self.conversation(owner, cid)
            return await asyncio.to_thread(self.store.delete_item, owner, cid, item_id)

    # ---- reading stored state (every route reads through here, never the store itself) ----
    async def conversation(self, owner: str, cid: str, param: str = "conversation_id") -> dict:
        row = await asyncio.to_thread(self.store.conversation, owner, cid)
        if row is None:
            raise NotFound(f"conversation '{cid}' not found", param=param)
        return row

    async def create_conversation(self, owner: str, metadata: dict, items: list[Message]) -> dict:
        unanswered = unanswered_results([], items)
        if unanswered:
            raise BadRequest(f"a tool result answers call '{unanswered[0]}', and no call has that id here",
                             param="items")
        return await asyncio.to_thread(self.store.create_conversation, owner, metadata, items)

    async def update_conversation(self, owner: str, cid: str, metadata: dict) -> dict:
        await self.conversation(owner, cid)
        return await asyncio.to_thread(self.store.update_metadata, owner, cid, metadata)

    async def list_items(self, owner: str, cid: str, after: str | None, limit: int, order: str,
                         ) -> tuple[list[Message], bool]:
        await self.conversation(owner, cid)
        return await asyncio.to_thread(self.store.list_items, owner, cid, after, limit, order)

    async def item(self, owner: str, cid: str, item_id: str) -> Message:
        await self.conversation(owner, cid)
        found = await asyncio.to_thread(self.store.item, owner, cid, item_id)
        if found is None:
            raise NotFound(f"item '{item_id}' not found in conversation '{cid}'", param="item_id")
        return found

    async def list_conversations(self, owner: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        return await asyncio.to_thread(self.store.list_conversations, owner, after, limit)

    async def messages(self, owner: str, cid: str) -> list[Message]:
        return await asyncio.to_thread(self.store.messages, owner, cid)

    async def response(self, owner: str, rid: str, param: str = "response_id") -> dict:
        found = await asyncio.to_thread(self.store.response, owner, rid)
        if found is None:
            raise NotFound(f"response '{rid}' not found", param=param)
        return found

    async def delete_response(self, owner: str, rid: str) -> None:
        if not await asyncio.to_thread(self.store.delete_response, owner, rid):
            raise NotFound(f"response '{rid}' not found", param="response_id")

    async def input_items(self, owner: str, rid: str, after: str | None, limit: int, order: str,
                          ) -> tuple[list[Message], bool]:
        response = await self.response(owner, rid)
        items = await asyncio.to_thread(self.store.input_items, owner, rid, response.get("dropped_rounds", 0))
        return page_of(items, after, limit, order)

    def store_status(self) -> dict:
        """kind, operations, errors, mean latency: counters the store keeps in memory."""
        return self.store.describe()

    async def count_conversations(self, owner: str | None) -> int:
        """The owner's conversations, or (None) every owner's."""
        return await asyncio.to_thread(self.store.count_conversations, owner)

    async def reset(self, owner: str, session_id: str) -> int:
        async with self.conversation_lock(owner, session_id):
            return await asyncio.to_thread(self.store.reset, owner, session_id)

    async def conversation_length(self, owner: str, session_id: str) -> int:
        """Messages (not rounds) in the conversation: 4 after two exchanges."""
        return len(await asyncio.to_thread(self.store.messages, owner, session_id))
