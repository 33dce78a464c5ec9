"""The engine interface: what the service needs of an inference engine. No HTTP here.

An engine turns token ids into an async stream of `TextDelta`s ending in one `Finished`. It
plugs in by subclassing `Engine` in its own module and implementing `load`, `_submit`, `close`
and `_describe`; prompts (the chat template, the context check) are shared here, so every engine
sees the same tokens for the same conversation.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from pure_model_api.engine.params import Finished, SamplingParams, TextDelta
from pure_model_api.engine.prompts import ChatRenderer
from pure_model_api.errors import ContextLengthExceeded, EngineFailed, ShuttingDown

log = logging.getLogger(__name__)


def run_inference_thread(loop, fail_all, on_failure, name: str) -> None:
    """The body of an in-process engine's inference thread: `loop()` until it returns (shutdown),
    then every request still held fails with ShuttingDown. A fault that escapes the loop (one
    inside a step fails that step's requests only) stops the thread: `on_failure(reason)` records
    why, for /health, and every request held fails with EngineFailed, so none waits for ever."""
    try:
        loop()
    except BaseException as error:  # noqa: BLE001 - whatever it was, nothing may wait forever
        log.exception("the %s inference thread stopped", name)
        failure = f"{type(error).__name__}: {error}"
        on_failure(failure)
        fail_all(EngineFailed(failure))
        return
    fail_all(ShuttingDown())


@dataclass(frozen=True)
class EngineOptions:
    """Everything an engine is built from; `from_settings` maps the service's flags."""

    engine: str = "auto"
    model: str = "demo"
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

    @classmethod
    def from_settings(cls, settings) -> EngineOptions:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


class GenerationHandle(Protocol):
    """The caller's side of one generation."""

    def cancel(self) -> None: ...

    def events(self) -> AsyncIterator[TextDelta | Finished]:
        """Deltas, then one Finished. Closing the iterator early cancels the generation."""


class Engine(ABC):
    name: str  # "vllm", "llama.cpp", "transformers"

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.prompts = ChatRenderer(tokenizer)
        self.failure: str | None = None  # set when the engine can serve nothing more; /health reports it

    @classmethod
    @abstractmethod
    def load(cls, options: EngineOptions) -> Engine:
        """Build the engine from the service's options; a ModelLoadError says, in one line, why it
        cannot (engine/select.py calls this)."""

    # ---- prompts ----
    def render_chat(self, messages: list[dict]) -> list[int]:
        """The tokenizer's own chat template, ending with the assistant's turn opened; the tokens
        of earlier turns stay the same as a conversation grows (see prompts.py)."""
        return self.prompts.render(messages)

    def encode(self, text: str) -> list[int]:
        """A raw prompt (/v1/completions): special tokens written in it are control tokens."""
        return self.prompts.encode(text)

    # ---- generation ----
    def submit(self, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle:
        """Queue a generation now: a prompt beyond the context or a full queue fails here, before
        any output."""
        failure = self.health()
        if failure is not None:
            raise EngineFailed(failure)
        needed = len(prompt_ids) + params.max_tokens
        if needed > self.context_length:
            raise ContextLengthExceeded(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: "
                f"together {needed}, beyond the model's context of {self.context_length} tokens")
        return self._submit(prompt_ids, params)

    @abstractmethod
    def _submit(self, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle: ...

    @abstractmethod
    def close(self) -> None: ...

    # ---- what operators see ----
    def health(self) -> str | None:
        """None while the engine can serve; else why it cannot (its inference thread stopped)."""
        return self.failure

    def describe(self) -> dict:
        """model_name, device, dtype, context_length, memory_allocated, kv_cache_bytes,
        running_requests, queued_requests, max_batch_size, and the engine's name."""
        return {"engine": self.name, **self._describe()}

    @abstractmethod
    def _describe(self) -> dict: ...
