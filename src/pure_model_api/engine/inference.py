"""The request lifecycle of an engine whose model runs in this process (transformers, llama.cpp).

One inference thread owns the running requests. Between steps it drops cancelled requests and
admits waiting ones while the engine's bound allows; a step (the engine's own: a padded batch, a
set of llama.cpp slots) runs outside the lock, so callers queue requests meanwhile. A fault in a
step fails that step's requests; a fault that escapes the loop stops the thread, is reported by
/health, and fails every request held; shutdown fails those still held with ShuttingDown. None
ever waits for ever. Callers live on an asyncio loop: `submit` returns a `RequestHandle`.
"""

from __future__ import annotations

import collections
import logging
import threading
from abc import abstractmethod

from pure_model_api.engine.base import Engine
from pure_model_api.engine.params import SamplingParams
from pure_model_api.engine.requests import RequestHandle, Sequence, new_request
from pure_model_api.engine.structured import Grammars, OutputConstraint
from pure_model_api.errors import EngineFailed, GenerationCancelled, ShuttingDown

log = logging.getLogger(__name__)


class InProcessEngine(Engine):
    """A subclass supplies `running`, `_admit`, `_step`, `_remove`, `_reset` and
    `grammar_tokenizer`, and calls `_start()` once its model is ready."""

    def __init__(self, tokenizer, context_length: int, options, max_running: int):
        super().__init__(tokenizer, context_length, options)
        self.max_running = max_running
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.wakeup = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.grammars = Grammars(self.grammar_tokenizer)

    # ---- what an engine supplies (all on the inference thread, bar `running`) ----
    @abstractmethod
    def running(self) -> list[Sequence]:
        """Admitted and not yet finished, in a stable order."""

    @abstractmethod
    def _admit(self, candidate: Sequence) -> bool:
        """Take `candidate` into the running set, or False when it does not fit now."""

    @abstractmethod
    def _step(self) -> None:
        """One forward pass over the running set; finished sequences leave it."""

    @abstractmethod
    def _remove(self, sequences: list[Sequence]) -> None:
        """Take cancelled sequences out of the running set."""

    @abstractmethod
    def _reset(self) -> None:
        """Empty the running set after a fault, dropping any state the fault may have spoilt."""

    @abstractmethod
    def grammar_tokenizer(self):
        """llguidance's view of the vocabulary, one entry per logit (structured outputs; built once,
        on first use, off the event loop)."""

    # ---- caller side (event loop thread) ----
    def _start(self) -> None:
        self.thread.start()

    def constrain(self, params: SamplingParams) -> OutputConstraint | None:
        return self.grammars.constraint(params.json_schema) if params.json_schema else None

    def _submit(self, prompt_ids: list[int], params: SamplingParams, on_end, constraint) -> RequestHandle:
        if params.json_schema and constraint is None:
            raise ValueError("a request with a JSON schema needs the engine's constrain(params)")
        sequence, handle = new_request(prompt_ids, params, self.tokenizer, on_end=on_end)
        sequence.constraint = constraint
        with self.wakeup:
            if self.stopping:  # checked again under the lock the thread leaves with: no request is left behind
                raise ShuttingDown()
            self.waiting.append(sequence)
            self.wakeup.notify()
        return handle

    def close(self) -> None:
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify()
        self.thread.join(10)

    # ---- inference thread ----
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # noqa: BLE001 - whatever it was, nothing may wait for ever
            log.exception("the %s inference thread stopped", self.name)
            failure = f"{type(error).__name__}: {error}"
            with self.wakeup:
                self.failure = failure
            self._fail_all(EngineFailed(failure))
            return
        self._fail_all(ShuttingDown())

    def _loop(self) -> None:
        while True:
            with self.wakeup:
                while not self.stopping and not self.waiting and not self.running():
                    self.wakeup.wait()
                if self.stopping:
                    return
                self._admit_waiting()
            try:
                self._drop_cancelled()
                if self.running():
                    self._step()
            except Exception as error:  # noqa: BLE001 - a fault fails the step's requests, not the thread
                log.exception("%s step failed", self.name)
                for sequence in self.running():
                    sequence.emit(error)
                self._reset()

    def _admit_waiting(self) -> None:
        while self.waiting and len(self.running()) < self.max_running:
            # first come, first served; background warm-ups (engine.warm) only when no one else waits
            candidate = next((s for s in self.waiting if not s.background), self.waiting[0])
            if candidate.cancelled:
                self.waiting.remove(candidate)
                candidate.emit(GenerationCancelled())
                continue
            if not self._admit(candidate):
                break
            self.waiting.remove(candidate)  # only once admitted: a fault in `_admit` leaves it waiting, and failed

    def _drop_cancelled(self) -> None:
        cancelled = [s for s in self.running() if s.cancelled]
        for sequence in cancelled:
            sequence.emit(GenerationCancelled())
        if cancelled:
            self._remove(cancelled)

    def _fail_all(self, error: Exception) -> None:
        with self.wakeup:
            pending = list(self.waiting) + self.running()
            self.waiting.clear()
        for sequence in pending:
            sequence.emit(error)
        self._reset()

    # ---- what operators see ----
    def counts(self) -> tuple[int, int]:
        """(running, waiting) requests."""
        return len(self.running()), len(self.waiting)
