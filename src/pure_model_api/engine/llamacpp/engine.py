"""The llama.cpp engine: GGUF files on a CPU, through llama-cpp-python's low-level API.

One llama.cpp context holds many sequences in one unified KV cache, as llama.cpp's own server
does with parallel slots. One inference thread runs the loop: each step makes one batch holding
the next token of every running sequence plus prompt chunks of new ones, calls `llama_decode`
once, and samples each sequence's next token with its own parameters (the service's sampler,
shared with the transformers engine). The request lifecycle around the step (queue, admission,
cancellation, shutdown) is the in-process engines' own (inference.py).

A slot keeps its sequence's KV cache after the request ends. The next request whose prompt
starts with a slot's cached tokens (the next turn of the same conversation) takes that slot and
prefills only what is new. Any other prompt takes an empty slot (else the least recently used)
and borrows the longest matching prefix of any cache by copy, so one conversation never cuts
back another's cache; a cache is never used beyond tokens that match exactly. When room is
needed, idle slots are emptied least-recently-used first; a conversation whose cache was evicted
is simply prefilled again.

With the KV tiers on (kv_tiers.py), a sequence that ends has its state saved, by the tokens it
holds, to RAM and disk, and only a few idle conversations keep their cells in the context: every
step attends over the context's used cells, so idle caches held there would slow every request.
A prompt whose longest saved prefix beats what the context holds has that state restored into a
slot (milliseconds, where prefilling it again takes seconds) and prefills only the rest; after a
restart the disk tier still has it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pure_model_api.engine.base import EngineOptions, EngineStats
from pure_model_api.engine.fit import kv_bytes_per_token
from pure_model_api.engine.inference import InProcessEngine
from pure_model_api.engine.llamacpp.gguf_chat import GgufTokenizer
from pure_model_api.engine.llamacpp.kv_tiers import KvTierOptions, KvTiers, SavedState
from pure_model_api.engine.params import SamplingParams
from pure_model_api.engine.requests import Sequence, accept_token
from pure_model_api.engine.sampling import choose_next_tokens
from pure_model_api.engine.structured import llamacpp_vocabulary
from pure_model_api.errors import ModelLoadError

log = logging.getLogger(__name__)

BATCH_TOKENS = 512  # tokens in one llama_decode: running sequences' next tokens, then prompt chunks
MAX_SEQUENCES = 256  # llama.cpp's own bound on sequences in one context (LLAMA_MAX_SEQ)
# A warm-up's prompt chunk per llama_decode: a request that arrives meanwhile waits for at most one
# such step (0.39 s here for 128 tokens of the demo model, 1.6 s for 512; prefill speed the same).
WARM_CHUNK = 128
# Warm-ups start only this long after the last request ran: a client that sends its next request at
# once (an agent's loop, a script) never waits behind one; a person's pause leaves them the time.
WARM_DELAY = 0.25
# A request waits for a running one that is prefilling at least this many more tokens of its prompt
# than any cache holds (the other choices of an `n` request, a shared system prompt), then copies them.
SHARE_MIN = 64
# Warm-ups waiting beyond this many (per running request the engine allows, twice over) are the
# oldest and the least likely to be wanted still: they are dropped, so a busy server's queue of
# them stays bounded.
WARM_QUEUE_PER_SLOT = 2
HOT_IDLE_SLOTS = 2  # with the KV tiers on: idle conversations whose cells stay in the context


@dataclass(eq=False)  # slots compare by identity
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # whose KV is in the context, in order
    sequence: Sequence | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to prefill
    next_token: int | None = None  # sampled, not yet fed
    last_used: float = 0.0


def gguf_path_of(model: str) -> Path:
    from pure_model_api.engine.loading import DEMO_MODEL, find_demo_gguf

    if model == DEMO_MODEL:
        return find_demo_gguf()
    path = Path(model).expanduser()
    if path.suffix != ".gguf":
        raise ModelLoadError(f"the llama.cpp engine serves .gguf files (or 'demo'), not '{model}'")
    if not path.is_file():
        raise ModelLoadError(f"GGUF file '{model}' does not exist")
    return path


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppEngine(InProcessEngine):
    name = "llama.cpp"
    warms_behind_requests = True

    def __init__(self, path: Path, options: EngineOptions):
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel

        self.llama_cpp = llama_cpp
        self.path = path
        model_params = LlamaModel.default_params()
        try:
            self.model = LlamaModel(path_model=str(path), params=model_params, verbose=False)
        except ValueError as error:
            raise ModelLoadError(f"llama.cpp cannot load '{path}': {error}") from error
        metadata = self.model.metadata()
        tokenizer = GgufTokenizer(self.model, metadata)
        self.n_ctx = max(options.kv_token_budget, 128)
        self.n_slots = min(MAX_SEQUENCES, max(4 * options.max_batch_size, 16))
        max_running = min(options.max_batch_size, self.n_slots)  # every running request needs a slot
        if max_running < options.max_batch_size:
            log.warning("llama.cpp runs at most %d sequences at once: --max-batch-size %d is lowered to %d",
                        MAX_SEQUENCES, options.max_batch_size, max_running)
        params = LlamaContext.default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = self.n_ctx, BATCH_TOKENS, BATCH_TOKENS
        params.n_seq_max, params.kv_unified = self.n_slots, True
        params.n_threads = params.n_threads_batch = os.cpu_count() or 1
        self.context = LlamaContext(model=self.model, params=params, verbose=False)
        self.batch = LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=1, verbose=False)
        super().__init__(tokenizer, min(self.model.n_ctx_train(), self.n_ctx), options, max_running)
        self.eos_ids = tokenizer.end_of_turn_ids()
        self.n_vocab = self.model.n_vocab()
        self.kv_bytes_per_token = kv_bytes_per_token(metadata)
        self.description = self.model.desc()
        self.slots = [Slot(i) for i in range(self.n_slots)]
        self.request_ran = 0.0  # when a step last fed a request (not a warm-up)
        self.tiers = self._tiers(options)
        self._start()

    def _tiers(self, options: EngineOptions) -> KvTiers | None:
        disk = Path(options.kv_dir) if options.kv_dir else None
        if not options.kv_ram_gb and not (disk and options.kv_disk_gb):
            return None
        stat = self.path.stat()
        identity = (f"llama.cpp {self.llama_cpp.__version__}|{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|"
                    f"{self.description}|{self.model.n_params()}|f16 KV, unified")
        return KvTiers(KvTierOptions(identity, int(options.kv_ram_gb * 2**30), disk, int(options.kv_disk_gb * 2**30)))

    @classmethod
    def load(cls, options: EngineOptions) -> LlamaCppEngine:
        return cls(gguf_path_of(options.weights or options.model), options)

    def stats(self) -> EngineStats:
        running, waiting = self.counts()
        kv_bytes = sum(len(s.tokens) for s in self.slots) * self.kv_bytes_per_token
        return EngineStats(
            engine=self.name, model_name=self.options.model, device="cpu", dtype=self.description,
            context_length=self.context_length, memory_allocated=self.model.size() + kv_bytes,
            kv_cache_bytes=kv_bytes, running_requests=running, queued_requests=waiting,
            max_batch_size=self.max_running,
            cached_conversations=sum(1 for s in self.slots if s.tokens and s.sequence is None),
            kv_tiers=self.tiers.stats() if self.tiers else None)

    def close(self) -> None:
        super().close()
        if self.tiers is not None:
            self.tiers.close()  # the disk writes handed over finish first (SIGTERM keeps them)

    # ---- the step (inference thread) ----
    def running(self) -> list[Sequence]:
        return [s.sequence for s in self.slots if s.sequence is not None]

    def _running_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.sequence is not None]

    def warm(self, prompt_ids: list[int]) -> None:
        """A background prefill of `prompt_ids`: admitted when no request waits, fed only while no
        request runs, joined by the first request whose prompt it begins (see `_join_warm_up`), and
        saved to the KV tiers when it ends like any other sequence."""
        sequence = Sequence(prompt_ids, SamplingParams(max_tokens=1, temperature=0), lambda event: None,
                            self.tokenizer)
        sequence.background = True
        with self.wakeup:
            if not self.stopping and len(prompt_ids) + 1 <= self.context_length:
                for older in [s for s in self.waiting if s.background  # the new one does all they would
                              and common_prefix(s.prompt_ids, prompt_ids) == len(s.prompt_ids)]:
                    self.waiting.remove(older)
                self.waiting.append(sequence)
                for oldest in [s for s in self.waiting if s.background][:-WARM_QUEUE_PER_SLOT * self.max_running]:
                    self.waiting.remove(oldest)
                self.wakeup.notify()

    def _admit(self, candidate: Sequence) -> bool:
        """A slot for `candidate`, while the running requests' prompts and replies fit the KV cache."""
        if not candidate.background:
            self._join_warm_up(candidate.prompt_ids)
        if self._prefilled_elsewhere_soon(candidate):
            return False
        running = self.running()
        if running and sum(s.reserved_tokens for s in running) + candidate.reserved_tokens > self.n_ctx:
            return False
        slot = self._slot_for(candidate.prompt_ids)
        slot.sequence, slot.next_token = candidate, None
        slot.pending = candidate.prompt_ids[len(slot.tokens):]
        candidate.cached_tokens = len(slot.tokens)
        return True

    def _join_warm_up(self, prompt: list[int]) -> None:
        """A warm-up still prefilling what `prompt` begins with stops where it got to: its slot, now
        idle, is the prompt's best match, and the request goes on from there, not from scratch."""
        for slot in self._running_slots():
            warm_up = slot.sequence
            if (warm_up.background and common_prefix(slot.tokens, prompt) == len(slot.tokens)
                    and common_prefix(warm_up.prompt_ids, prompt) > 0):
                self._release(slot, save=False)  # the joining request extends it and saves that

    def _prefilled_elsewhere_soon(self, candidate: Sequence) -> bool:
        """Whether a running sequence is prefilling much of `candidate`'s prompt that no cache holds
        yet: then `candidate` waits, and copies those cells once they are there (`_slot_for`),
        rather than computing them beside it at half the speed. A request waits only for another
        request, never for a warm-up (which yields to it, and may be starved while users run)."""
        prompt = candidate.prompt_ids
        coming = max((common_prefix(slot.sequence.prompt_ids, prompt) for slot in self._running_slots()
                      if slot.pending and (candidate.background or not slot.sequence.background)), default=0)
        if coming < SHARE_MIN:  # the usual case: no running prefill shares much; no cache to search
            return False
        held = max(common_prefix(s.tokens, prompt) for s in self.slots)
        if self.tiers is not None and (found := self.tiers.best(prompt)):
            held = max(held, found[1])
        return coming >= held + SHARE_MIN

    def _remove(self, sequences: list[Sequence]) -> None:
        for slot in self._running_slots():
            if slot.sequence in sequences:
                self._release(slot)

    def _reset(self) -> None:
        for slot in self._running_slots():
            self._release(slot, keep_cache=False)  # a failed decode may have left part of a batch in the cache

    def grammar_tokenizer(self):
        return llamacpp_vocabulary(self.model, self.eos_ids)

    def _slot_for(self, prompt: list[int]) -> Slot:
        """A slot for `prompt`, holding as much of it as any cache has, and never more than matches
        exactly (and one token short of the prompt, whose logits are needed). The conversation's
        own slot is taken as it is. Otherwise the prompt goes to an empty slot, else to the least
        recently used one, and borrows the longest matching prefix (another conversation's system
        prompt, or its own cache before an edit) by copy: in llama.cpp's unified KV cache a copy
        shares the cells, and the cache it came from stays whole for its own conversation."""
        idle = [s for s in self.slots if s.sequence is None]
        best = max(idle, key=lambda s: common_prefix(s.tokens, prompt))
        running = max(self._running_slots(), key=lambda s: common_prefix(s.tokens, prompt), default=best)
        if common_prefix(running.tokens, prompt) > common_prefix(best.tokens, prompt):
            best = running  # a running request's cells hold more (the same prompt's other choices): copied
        shared = min(common_prefix(best.tokens, prompt), len(prompt) - 1)
        saved = self._saved_prefix(prompt, shared)
        if saved is None and shared > 0 and shared == len(best.tokens) and best.sequence is None:
            return best
        target = min(idle, key=lambda s: (bool(s.tokens), s.last_used))
        if saved is not None and self._restore(target, *saved):
            return target
        if target is best:  # the least recently used cache is the best match: cut it back
            self._truncate(best, shared)
            return best
        self._truncate(target, 0)
        if shared > 0:
            self.context.kv_cache_seq_cp(best.seq_id, target.seq_id, 0, shared)
            target.tokens = best.tokens[:shared]
        return target

    def _truncate(self, slot: Slot, keep: int) -> None:
        if keep < len(slot.tokens):
            self.context.kv_cache_seq_rm(slot.seq_id, keep, -1)
            del slot.tokens[keep:]

    def _release(self, slot: Slot, keep_cache: bool = True, save: bool = True) -> None:
        slot.sequence, slot.pending, slot.next_token = None, [], None
        slot.last_used = time.monotonic()
        if not keep_cache:
            self._truncate(slot, 0)
        elif save and self.tiers is not None and slot.tokens:
            self._save(slot)

    # ---- the KV tiers ----
    def _saved_prefix(self, prompt: list[int], live: int) -> tuple[SavedState, int] | None:
        """A saved state holding more of `prompt` than the context does, and how much of it to use."""
        if self.tiers is None or live >= len(prompt) - 1:
            return None
        found = self.tiers.best(prompt)
        usable = min(found[1], len(prompt) - 1) if found else 0
        if usable <= live:
            self.tiers.miss()
            return None
        return found[0], usable

    def _save(self, slot: Slot) -> None:
        """The slot's state to the tiers; then, past a few hot ones, idle cells leave the context."""
        size = self.llama_cpp.llama_state_seq_get_size(self.context.ctx, slot.seq_id)
        data = bytearray(size)
        written = self.llama_cpp.llama_state_seq_get_data(
            self.context.ctx, (ctypes.c_uint8 * size).from_buffer(data), size, slot.seq_id)
        if not written or not self.tiers.save(slot.tokens, data[:written] if written < size else data):
            return
        hot = sorted((s for s in self.slots if s.sequence is None and s.tokens), key=lambda s: s.last_used)
        for cold in hot[:max(0, len(hot) - HOT_IDLE_SLOTS)]:
            self._truncate(cold, 0)

    def _restore(self, target: Slot, state: SavedState, usable: int) -> bool:
        """`state` into `target`'s sequence, cut back to its first `usable` tokens."""
        started, tier = time.perf_counter(), "ram" if state.data is not None else "disk"
        data = self.tiers.load(state)
        if data is None:
            return False
        self._truncate(target, 0)
        self._make_room(len(state.tokens))
        read = self.llama_cpp.llama_state_seq_set_data(
            self.context.ctx, (ctypes.c_uint8 * len(data)).from_buffer(data), len(data), target.seq_id)
        if not read:
            self.context.kv_cache_seq_rm(target.seq_id, 0, -1)
            log.warning("llama.cpp could not restore a saved state of %d tokens; prefilling", len(state.tokens))
            return False
        target.tokens = state.tokens.tolist()
        self._truncate(target, usable)
        self.tiers.restored(tier, time.perf_counter() - started)
        return True

    def _make_room(self, needed: int) -> None:
        """Empty idle slots, least recently used first, until `needed` more tokens fit."""
        held = sum(len(s.tokens) for s in self.slots)
        for slot in sorted((s for s in self.slots if s.sequence is None and s.tokens), key=lambda s: s.last_used):
            if held + needed <= self.n_ctx:
                return
            held -= len(slot.tokens)
            self._truncate(slot, 0)

    def _step(self) -> None:
        """One llama_decode: every decoding sequence's next token, then prompt chunks."""
        decoding = [s for s in self._running_slots() if s.next_token is not None]
        feeds = [(slot, [slot.next_token], True) for slot in decoding]
        budget = BATCH_TOKENS - len(feeds)
        users = any(not s.sequence.background for s in self._running_slots())  # warm-ups wait for them
        if users:
            self.request_ran = time.monotonic()
        elif self._holding_warm_ups():
            return
        for slot in self._running_slots():
            if slot.next_token is None and slot.pending and budget > 0 and not (users and slot.sequence.background):
                chunk = slot.pending[:min(budget, WARM_CHUNK) if slot.sequence.background else budget]
                feeds.append((slot, chunk, len(chunk) == len(slot.pending)))
                budget -= len(chunk)
        self._make_room(sum(len(tokens) for _, tokens, _ in feeds))
        rows = self._decode(feeds)
        for slot, tokens, _ in feeds:
            slot.tokens += tokens
            if slot in decoding:
                slot.next_token = None
            else:
                slot.pending = slot.pending[len(tokens):]
        if not rows:
            return
        sequences = [slot.sequence for slot, _ in rows]
        logits = np.stack([row for _, row in rows])
        for (slot, _), token in zip(rows, choose_next_tokens(logits, sequences)):
            if accept_token(slot.sequence, token, self.eos_ids, self.context_length):
                slot.next_token = token
            else:
                self._release(slot)

    def _holding_warm_ups(self) -> bool:
        """Within WARM_DELAY of the last request, warm-ups wait (until then, or until a request comes)."""
        left = self.request_ran + WARM_DELAY - time.monotonic()
        if left <= 0:
            return False
        with self.wakeup:
            if all(s.background for s in self.waiting):
                self.wakeup.wait(left)
        return True

    def _decode(self, feeds: list[tuple[Slot, list[int], bool]]) -> list[tuple[Slot, np.ndarray]]:
        batch = self.batch.batch
        j, wanted = 0, []
        for slot, tokens, want_logits in feeds:
            start = len(slot.tokens)
            for i, token in enumerate(tokens):
                batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, start + i, 1
                batch.seq_id[j][0] = slot.seq_id
                batch.logits[j] = want_logits and i == len(tokens) - 1
                if batch.logits[j]:
                    wanted.append((slot, j))
                j += 1
        batch.n_tokens = j
        self.context.decode(self.batch)
        rows = []
        for slot, index in wanted:
            pointer = self.llama_cpp.llama_get_logits_ith(self.context.ctx, index)
            values = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                           shape=(self.n_vocab,))
            rows.append((slot, values.copy()))
        return rows
