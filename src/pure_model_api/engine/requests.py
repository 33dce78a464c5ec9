"""One request inside an in-process engine (transformers, llama.cpp), and the caller's handle on it.

The engine's inference thread owns the `Sequence`; the caller, on an asyncio loop, holds the
`RequestHandle`, whose `events()` is an async stream of `TextDelta`s ending in one `Finished`.
No torch here: a llama.cpp-only server never imports it.
"""

from __future__ import annotations

import asyncio
import time

from pure_model_api.engine.params import Finished, SamplingParams, TextDelta, TokenLogprob
from pure_model_api.engine.sampling import make_generator
from pure_model_api.engine.text import IncrementalDecoder, StopStringFilter
from pure_model_api.errors import ApiError, GenerationCancelled


class Sequence:
    """One request while the engine works on it. Touched only by the inference thread,
    except `cancelled`, which any thread may set."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, emit, tokenizer):
        self.prompt_ids = prompt_ids
        self.params = params
        self.emit = emit
        self.generator = make_generator(params.seed)
        self.reply_ids: list[int] = []
        self.decoder = IncrementalDecoder(tokenizer)
        self.stop_filter = StopStringFilter(params.stop)
        self.text_parts: list[str] = []
        self.cancelled = False
        self.background = False  # a warm-up nobody waits for (engine.warm): admitted and fed last
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.cached_tokens = 0  # prompt tokens whose KV cache an earlier request left (llama.cpp)
        self.constraint = None  # an OutputConstraint when the reply must match a JSON schema
        self.token_logprob = None  # (log-probability, [(id, log-probability)]) of the token just drawn, where asked
        self.logprobs: list[TokenLogprob] = []  # every reply token's, where asked
        self.unsent_logprobs: list[TokenLogprob] = []  # those of tokens whose text is still held back

    @property
    def reserved_tokens(self) -> int:
        return len(self.prompt_ids) + self.params.max_tokens

    def send_text(self, text: str) -> None:
        if text:
            self.text_parts.append(text)
            self.emit(TextDelta(text, tuple(self.unsent_logprobs)))
            self.unsent_logprobs = []

    def note_logprob(self, token: int) -> None:
        """Name the token just drawn and its alternatives (what `choose_next_tokens` measured)."""
        logprob, top = self.token_logprob
        decode = self.decoder.tokenizer.decode
        entry = TokenLogprob(decode([token]), logprob, tuple((decode([i]), value) for i, value in top))
        self.logprobs.append(entry)
        self.unsent_logprobs.append(entry)
        self.token_logprob = None

    def finish(self, reason: str) -> None:
        if not self.stop_filter.stopped:  # what the decoder still holds came before any stop string
            self.send_text(self.stop_filter.push(self.decoder.flush()))
        if not self.stop_filter.stopped:
            self.send_text(self.stop_filter.flush())
        if self.unsent_logprobs:  # tokens whose text a stop string took: a stream still gets every token
            self.emit(TextDelta("", tuple(self.unsent_logprobs)))
        now = time.perf_counter()
        first = self.first_token_at or now
        decoded = max(len(self.reply_ids) - 1, 1)
        self.emit(Finished(
            text="".join(self.text_parts), finish_reason=reason,
            prompt_tokens=len(self.prompt_ids), completion_tokens=len(self.reply_ids),
            time_to_first_token_s=first - self.submitted_at,
            time_per_output_token_s=(now - first) / decoded, cached_tokens=self.cached_tokens,
            logprobs=tuple(self.logprobs) if self.params.logprobs is not None else None,
            stop_string=self.stop_filter.matched,
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
    if sequence.token_logprob is not None:
        sequence.note_logprob(token)
    if sequence.constraint is not None and not sequence.constraint.accept(token):  # its mask allowed it: a bug
        sequence.emit(ApiError(f"the output grammar refused a token it allowed ({token})"))
        return False
    sequence.send_text(sequence.stop_filter.push(sequence.decoder.push(token)))
    if sequence.stop_filter.stopped or (sequence.constraint is not None and sequence.constraint.complete):
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
    inference thread to the caller's event loop; `on_end` runs at the last event (Engine.submit's
    callback counts it once however often it is called)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def emit(event) -> None:
        if on_end is not None and isinstance(event, (Finished, BaseException)):
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
