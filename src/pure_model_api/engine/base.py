"""The engine interface: what the service needs of an inference engine. No HTTP here.

An engine turns token ids into an async stream of `TextDelta`s ending in one `Finished`. It
plugs in as a sub-package of its own (llamacpp/, transformers/, vllm/) whose class subclasses
`Engine` and implements `load`, `_submit`, `close` and `stats`; an engine that runs its model in
this process subclasses `InProcessEngine` (inference.py), which is the request lifecycle, and
supplies only its step. Prompts (the chat template), the context check and the bound on requests
held are shared here, so every engine sees the same tokens and refuses the same requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from pure_model_api.engine.params import Finished, SamplingParams, TextDelta
from pure_model_api.engine.prompts import ChatRenderer
from pure_model_api.engine.tools import CallFormat, ToolRequest, check_plain, detect_format, template_messages
from pure_model_api.errors import ContextLengthExceeded, EngineFailed, ServerBusy, ShuttingDown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """Everything an engine is built from; `from_settings` maps the service's flags."""

    engine: str = "auto"
    model: str = "demo"  # the name it is served under
    weights: str | None = None  # the local file it loads from, where the name is not one (org/repo:Q4_K_M)
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 16
    max_queue: int = 64
    kv_token_budget: int = 65536  # transformers: prompt + max_tokens summed over running requests
    # vLLM only
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    kv_cache_gb: float | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    kv_offload_gb: float | None = None
    # llama.cpp only: saved conversation KV states (llamacpp/kv_tiers.py)
    kv_ram_gb: float = 0.0
    kv_disk_gb: float = 0.0
    kv_dir: str | None = None
    skip_memory_check: bool = False

    @classmethod
    def from_settings(cls, settings) -> EngineOptions:
        derived = {"kv_dir": settings.kv_directory(), "weights": None}
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__ if name not in derived},
                   **derived)


class GenerationHandle(Protocol):
    """The caller's side of one generation."""

    def cancel(self) -> None: ...

    def events(self) -> AsyncIterator[TextDelta | Finished]:
        """Deltas, then one Finished. Closing the iterator early cancels the generation."""


@dataclass(frozen=True)
class EngineStats:
    """What /status and /metrics show of the engine; the last three only where an engine has them."""

    engine: str
    model_name: str
    device: str
    dtype: str
    context_length: int
    memory_allocated: int
    kv_cache_bytes: int
    running_requests: int
    queued_requests: int
    max_batch_size: int
    cached_conversations: int | None = None  # llama.cpp: idle slots holding a conversation's cache
    prefix_caching: bool | None = None  # vLLM
    kv_block_size: int | None = None  # vLLM: its prefix cache reuses whole blocks of this many tokens
    kv_tiers: dict | None = None  # llama.cpp: saved conversation states per tier, hits, restores, evictions

    def as_dict(self) -> dict:
        return {name: value for name, value in asdict(self).items() if value is not None}


class Engine(ABC):
    name: str  # "vllm", "llama.cpp", "transformers"
    # warm() runs only behind requests a user waits for, so the service may call it every turn
    warms_behind_requests = False

    def __init__(self, tokenizer, context_length: int, options: EngineOptions):
        self.tokenizer = tokenizer
        self.context_length = min(context_length, options.max_model_len or context_length)
        self.options = options
        self.prompts = ChatRenderer(tokenizer)
        self.failure: str | None = None  # set when the engine can serve nothing more; /health reports it
        self.stopping = False  # set by close()
        self.in_flight = 0  # submitted and not yet at their last event, wherever they are
        self._counting = threading.Lock()
        self._warm_ups: set[asyncio.Task] = set()
        self.memory_estimate = None  # what select.py estimated the model needs, before loading it

    @classmethod
    @abstractmethod
    def load(cls, options: EngineOptions) -> Engine:
        """Build the engine from the service's options; a ModelLoadError says, in one line, why it
        cannot (engine/select.py calls this)."""

    # ---- prompts ----
    def render_chat(self, messages: list[dict], tools: ToolRequest | None = None) -> list[int]:
        """The tokenizer's own chat template, ending with the assistant's turn opened; the tokens
        of earlier turns stay the same as a conversation grows (see prompts.py). Tools, and
        messages that call them or carry their results, are shown in the model's format (tools.py)."""
        definitions = None
        if tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
            messages, definitions = template_messages(self.tool_format, messages, tools)
            if self.tool_format.native:
                check_plain(self.prompts, messages, definitions)
        return self.prompts.render(messages, definitions)

    @functools.cached_property
    def tool_format(self) -> CallFormat:
        """How this model's template shows tools and its replies call them (tools.py)."""
        return detect_format(self.prompts)

    def encode(self, text: str) -> list[int]:
        """A raw prompt (/v1/completions): special tokens written in it are control tokens."""
        return self.prompts.encode(text)

    # ---- generation ----
    def constrain(self, params: SamplingParams):
        """What enforces `params.json_schema` here, to hand to `submit`: built off the event loop
        (the service calls this in a worker thread; compiling a schema costs in its size). None
        where nothing is to be built: no schema, or an engine that compiles its own (vLLM). A
        schema that cannot be enforced is a BadRequest."""
        return None

    def submit(self, prompt_ids: list[int], params: SamplingParams, constraint=None) -> GenerationHandle:
        """Queue a generation now: a stopped engine, a prompt beyond the context or a full queue
        fails here, before any output. At most max_batch_size + max_queue requests are held,
        counted from here to their last event (running, waiting, or cancelled and not yet gone).
        `constraint`: what `constrain(params)` built, for a request with a JSON schema."""
        if self.stopping:
            raise ShuttingDown()
        failure = self.health()
        if failure is not None:
            raise EngineFailed(failure)
        needed = len(prompt_ids) + params.max_tokens
        if needed > self.context_length:
            raise ContextLengthExceeded(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: "
                f"together {needed}, beyond the model's context of {self.context_length} tokens")
        with self._counting:
            if self.in_flight >= self.options.max_batch_size + self.options.max_queue:
                raise ServerBusy()
            self.in_flight += 1
        on_end = self._one_end()
        try:
            return self._submit(prompt_ids, params, on_end, constraint)
        except BaseException:
            on_end()
            raise

    def _one_end(self) -> Callable[[], None]:
        """A callback that takes one request off the count, once however often it is called."""
        ended = []

        def on_end() -> None:
            with self._counting:
                if not ended:
                    ended.append(True)
                    self.in_flight -= 1
        return on_end

    def warm(self, prompt_ids: list[int]) -> None:
        """Prefill `prompt_ids` in the background so that a later prompt beginning with them finds
        their KV cache (the service calls this from the event loop after a conversation's window
        dropped rounds, when it knows the next prompt's beginning). Here: a one-token generation,
        which leaves the prompt in a prefix cache (vLLM); nothing when the engine is full. Engines
        override it: llama.cpp runs it behind every request a user waits for, and an engine that
        keeps no cache between requests does nothing."""
        try:
            handle = self.submit(prompt_ids, SamplingParams(max_tokens=1, temperature=0))
        except (ServerBusy, ShuttingDown, EngineFailed, ContextLengthExceeded):
            return

        async def drain() -> None:
            with contextlib.suppress(Exception):
                async for _ in handle.events():
                    pass
        task = asyncio.get_running_loop().create_task(drain())
        self._warm_ups.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._warm_ups.discard)

    @abstractmethod
    def _submit(self, prompt_ids: list[int], params: SamplingParams, on_end: Callable[[], None],
                constraint) -> GenerationHandle:
        """Start the generation; call `on_end()` at its last event (or when it is cancelled before
        it started)."""

    @abstractmethod
    def close(self) -> None:
        """Set `stopping`, fail what is still held with ShuttingDown, free the model."""

    # ---- what operators see ----
    def health(self) -> str | None:
        """None while the engine can serve; else why it cannot (its inference thread stopped)."""
        return self.failure

    @abstractmethod
    def stats(self) -> EngineStats: ...
