"""Continuous batching on one inference thread.

Between decode steps the thread admits waiting requests (one batched prefill for all that fit)
and drops finished or cancelled ones. Callers live on an asyncio loop: `submit` returns a
`RequestHandle` whose `events()` is an async stream of `TextDelta`s ending in one `Finished`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time

import torch
from transformers import DynamicCache

from pure_model_api.engine.base import run_inference_thread
from pure_model_api.engine.batch import RunningBatch, cache_keyword_of, left_padded
from pure_model_api.engine.params import Finished, SamplingParams, TextDelta
from pure_model_api.engine.sampling import choose_next_tokens, make_generator
from pure_model_api.engine.text import IncrementalDecoder, StopStringFilter
from pure_model_api.errors import EngineFailed, GenerationCancelled, ServerBusy, ShuttingDown

log = logging.getLogger(__name__)

# Padded prompt tokens in one batched prefill. Sixteen short chats (about 40 tokens each) fit in
# one; long histories join a few at a time, so running rows stall for one bounded prefill at most.
MAX_PREFILL_TOKENS = 8192


class Sequence:
    """One request while the engine works on it. Touched only by the inference thread,
    except `cancelled`, which any thread may set."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, emit, tokenizer):
        self.prompt_ids = prompt_ids
        self.prompt_tensor = torch.tensor(prompt_ids, dtype=torch.long)
        self.params = params
        self.emit = emit
        self.generator = make_generator(params.seed)
        self.reply_ids: list[int] = []
        self.decoder = IncrementalDecoder(tokenizer)
        self.stop_filter = StopStringFilter(params.stop)
        self.text_parts: list[str] = []
        self.cancelled = False
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.cached_tokens = 0  # prompt tokens whose KV cache an earlier request left (llama.cpp)

    @property
    def reserved_tokens(self) -> int:
        return len(self.prompt_ids) + self.params.max_tokens

    def send_text(self, text: str) -> None:
        if text:
            self.text_parts.append(text)
            self.emit(TextDelta(text))

    def finish(self, reason: str) -> None:
        if not self.stop_filter.stopped:  # what the decoder still holds came before any stop string
            self.send_text(self.stop_filter.push(self.decoder.flush()))
        if not self.stop_filter.stopped:
            self.send_text(self.stop_filter.flush())
        now = time.perf_counter()
        first = self.first_token_at or now
        decoded = max(len(self.reply_ids) - 1, 1)
        self.emit(Finished(
            text="".join(self.text_parts), finish_reason=reason,
            prompt_tokens=len(self.prompt_ids), completion_tokens=len(self.reply_ids),
            time_to_first_token_s=first - self.submitted_at,
            time_per_output_token_s=(now - first) / decoded, cached_tokens=self.cached_tokens,
        ))


def accept_token(sequence: Sequence, token: int, eos_ids: set[int], context_length: int) -> bool:
    """Take one sampled token; False when the sequence is finished (or gone). Shared by the
    engines that sample in this process (transformers, llama.cpp)."""
    if sequence.cancelled:
        sequence.emit(GenerationCancelled())
        return False
    if sequence.first_token_at is None:
        sequence.first_token_at = time.perf_counter()
    if token in eos_ids and not sequence.params.ignore_eos:
        sequence.finish("stop")
        return False
    sequence.reply_ids.append(token)
    sequence.send_text(sequence.stop_filter.push(sequence.decoder.push(token)))
    if sequence.stop_filter.stopped:
        sequence.finish("stop")
        return False
    at_context_end = len(sequence.prompt_ids) + len(sequence.reply_ids) >= context_length
    if len(sequence.reply_ids) >= sequence.params.max_tokens or at_context_end:
        sequence.finish("length")
        return False
    return True


def new_request(prompt_ids: list[int], params: SamplingParams, tokenizer,
                on_end=None) -> tuple[Sequence, RequestHandle]:
    """A sequence for an inference thread and the caller's handle on it. Events cross from the
    inference thread to the caller's event loop; `on_end` runs once, at the last event."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    ended = []

    def emit(event) -> None:
        if on_end is not None and isinstance(event, (Finished, BaseException)) and not ended:
            ended.append(event)
            on_end()
        try:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    sequence = Sequence(prompt_ids, params, emit, tokenizer)
    return sequence, RequestHandle(sequence, queue)


class RequestHandle:
    """The caller's side of one request."""

    def __init__(self, sequence: Sequence, queue: asyncio.Queue):
        self._sequence = sequence
        self._queue = queue
        self.done = False

    def cancel(self) -> None:
        if not self.done:
            self._sequence.cancelled = True

    async def events(self):
        try:
            while True:
                event = await self._queue.get()
                if isinstance(event, BaseException):
                    self.done = True
                    raise event
                if isinstance(event, Finished):
                    self.done = True
                yield event
                if self.done:
                    return
        finally:
            self.cancel()


class Scheduler:
    def __init__(self, model, tokenizer, *, eos_ids: set[int], pad_id: int, context_length: int,
                 max_batch_size: int, max_queue: int, kv_token_budget: int):
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.cache_keyword = cache_keyword_of(model)
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.context_length = context_length
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.kv_token_budget = kv_token_budget
        self.max_prefill_tokens = MAX_PREFILL_TOKENS
        self.batch = RunningBatch.empty(self.device)
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.in_flight = 0  # submitted and not yet finished, failed or cancelled
        self.wakeup = threading.Condition()
        self.stopping = False
        self.joining: list[Sequence] = []  # admitted, not yet in the batch
        self.failure: str | None = None  # why the inference thread stopped, if a fault stopped it
        self.on_failure = lambda failure: None
        self.thread = threading.Thread(target=self._run, name="inference", daemon=True)

    # ---- caller side (event loop thread) ----
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify()
        self.thread.join(timeout)

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        sequence, handle = new_request(prompt_ids, params, self.tokenizer, on_end=self._ended)
        with self.wakeup:
            if self.stopping:
                raise ShuttingDown()
            if self.failure is not None:
                raise EngineFailed(self.failure)
            # Counted from submission to its last event, wherever it is (waiting, joining the batch
            # in a prefill, running), so the bound holds exactly.
            if self.in_flight >= self.max_batch_size + self.max_queue:
                raise ServerBusy()
            self.in_flight += 1
            self.waiting.append(sequence)
            self.wakeup.notify()
        return handle

    def _ended(self) -> None:
        with self.wakeup:
            self.in_flight -= 1

    def counts(self) -> tuple[int, int]:
        """(running, waiting) requests."""
        return len(self.batch), len(self.waiting)

    # ---- inference thread ----
    def _run(self) -> None:
        run_inference_thread(self._loop, self._fail_all, self._failed, "transformers")

    def _failed(self, failure: str) -> None:
        with self.wakeup:
            self.failure = failure
        self.on_failure(failure)

    def _loop(self) -> None:
        while True:
            with self.wakeup:
                while not self.stopping and not self.waiting and not self.batch.rows:
                    self.wakeup.wait()
                if self.stopping:
                    return
                self.joining = joining = self._admit()
            try:
                self._drop_cancelled()
                if joining:
                    self._prefill(joining)
                self.joining = []
                if self.batch.rows:
                    self._decode_step()
            except Exception as error:  # noqa: BLE001 - a fault fails the requests, not the thread
                log.exception("inference step failed")
                for sequence in self.batch.rows + joining:
                    sequence.emit(error)
                self.batch = RunningBatch.empty(self.device)
                self.joining = []

    def _admit(self) -> list[Sequence]:
        """Move waiting requests into the batch while slots and the KV token budget allow."""
        joining: list[Sequence] = []
        reserved = sum(s.reserved_tokens for s in self.batch.rows)
        longest = 0
        while self.waiting and len(self.batch) + len(joining) < self.max_batch_size:
            candidate = self.waiting[0]
            if candidate.cancelled:
                self.waiting.popleft().emit(GenerationCancelled())
                continue
            fits = reserved + candidate.reserved_tokens <= self.kv_token_budget
            padded = max(longest, len(candidate.prompt_ids)) * (len(joining) + 1)
            if joining and padded > self.max_prefill_tokens:
                break  # the rest join at the next step: one prefill stays bounded in time and memory
            if not fits and (self.batch.rows or joining):
                break
            joining.append(self.waiting.popleft())
            reserved += candidate.reserved_tokens
            longest = max(longest, len(candidate.prompt_ids))
        return joining

    @torch.inference_mode()
    def _prefill(self, joining: list[Sequence]) -> None:
        """The joining prompts in one left-padded forward pass, then into the batch. A prompt
        padded beside others can come out a few bits apart from its solo run, which flips a greedy
        near-tie now and then; prefilling each alone made that rarer but not impossible, and cost
        a tenth of the throughput at 16 clients (README, Engines), so the batch is kept."""
        inputs = left_padded([s.prompt_ids for s in joining], self.pad_id, self.device)
        cache = DynamicCache()
        logits = self.model(**inputs, **{self.cache_keyword: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
        first_tokens = choose_next_tokens(logits, joining)
        newcomers = RunningBatch(joining, cache, inputs["attention_mask"],
                                 inputs["attention_mask"].sum(dim=1),
                                 torch.tensor(first_tokens, dtype=torch.long, device=self.device))
        keep = [i for i, (s, t) in enumerate(zip(joining, first_tokens)) if self._accept(s, t)]
        newcomers.keep(keep)
        self.batch.merge(newcomers)

    @torch.inference_mode()
    def _decode_step(self) -> None:
        logits = self.model(**self.batch.decode_inputs(self.cache_keyword), use_cache=True).logits[:, -1]
        tokens = choose_next_tokens(logits, self.batch.rows)
        self.batch.next_tokens = torch.tensor(tokens, dtype=torch.long, device=self.device)
        keep = [i for i, (s, t) in enumerate(zip(self.batch.rows, tokens)) if self._accept(s, t)]
        self.batch.keep(keep)

    def _accept(self, sequence: Sequence, token: int) -> bool:
        return accept_token(sequence, token, self.eos_ids, self.context_length)

    def _drop_cancelled(self) -> None:
        rows = self.batch.rows
        if any(s.cancelled for s in rows):
            for s in rows:
                if s.cancelled:
                    s.emit(GenerationCancelled())
            self.batch.keep([i for i, s in enumerate(rows) if not s.cancelled])

    def _fail_all(self, error: Exception) -> None:
        with self.wakeup:
            pending = list(self.waiting) + [s for s in self.joining if s not in self.batch.rows] + self.batch.rows
            self.waiting.clear()
            self.joining = []
        for sequence in pending:
            sequence.emit(error)
        self.batch = RunningBatch.empty(self.device)
