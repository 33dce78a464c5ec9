"""The transformers engine: the portable reference (any CPU, CUDA), a model loaded through
transformers' Auto classes (loading.py) and batched continuously on one inference thread.

Its step: the requests admitted since the last step join in one left-padded prefill, then every
running row decodes one token (batch.py keeps the rows and their shared KV cache). The request
lifecycle around the step (queue, admission, cancellation, shutdown) is the in-process engines'
own (inference.py).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from pure_model_api.engine.base import EngineOptions, EngineStats
from pure_model_api.engine.inference import InProcessEngine
from pure_model_api.engine.loading import LoadedModel, load_model
from pure_model_api.engine.requests import Sequence, accept_token
from pure_model_api.engine.sampling import choose_next_tokens, plain_greedy
from pure_model_api.engine.structured import hf_vocabulary
from pure_model_api.engine.transformers.batch import (
    RunningBatch,
    cache_keyword_of,
    distinct_prompts,
    left_padded,
    select_cache_rows,
)

# Padded prompt tokens in one batched prefill. Sixteen short chats (about 40 tokens each) fit in
# one; long histories join a few at a time, so running rows stall for one bounded prefill at most.
MAX_PREFILL_TOKENS = 8192


def next_tokens(logits: torch.Tensor, rows: list[Sequence]) -> list[int]:
    """Plain greedy rows take one argmax where the logits are; any other batch is drawn on the CPU."""
    if plain_greedy(rows):
        return torch.argmax(logits, dim=-1).tolist()
    return choose_next_tokens(logits.float().cpu().numpy(), rows)


class TransformersEngine(InProcessEngine):
    name = "transformers"

    def __init__(self, loaded: LoadedModel, options: EngineOptions = EngineOptions()):
        super().__init__(loaded.tokenizer, loaded.context_length, options, options.max_batch_size)
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.cache_keyword = cache_keyword_of(loaded.model)
        self.max_prefill_tokens = MAX_PREFILL_TOKENS
        self.batch = RunningBatch.empty(self.device)
        self.joining: list[Sequence] = []  # admitted, not yet prefilled into the batch
        self.weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        self._start()

    @classmethod
    def load(cls, options: EngineOptions) -> TransformersEngine:
        return cls(load_model(options.model, options.device, options.dtype), options)

    def warm(self, prompt_ids: list[int]) -> None:
        """Nothing to warm: this engine keeps no cache between requests."""

    def stats(self) -> EngineStats:
        running, waiting = self.counts()
        kv_bytes = self.batch.kv_bytes()
        if self.device.type == "cuda":
            memory = torch.cuda.memory_allocated(self.device)
        else:
            memory = self.weight_bytes + kv_bytes
        return EngineStats(
            engine=self.name, model_name=self.loaded.name, device=str(self.device),
            dtype=str(self.loaded.dtype).removeprefix("torch."), context_length=self.context_length,
            memory_allocated=memory, kv_cache_bytes=kv_bytes, running_requests=running,
            queued_requests=waiting, max_batch_size=self.max_running)

    # ---- the step (inference thread) ----
    def running(self) -> list[Sequence]:
        return list(dict.fromkeys(self.batch.rows + self.joining))  # a row is in one of them, but for a moment

    def _admit(self, candidate: Sequence) -> bool:
        """Join the next prefill while the KV token budget allows (the first request always may),
        and while one prefill of the joining prompts, padded to the longest, stays bounded."""
        running = self.running()
        reserved = sum(s.reserved_tokens for s in running)
        if running and reserved + candidate.reserved_tokens > self.options.kv_token_budget:
            return False
        prompts, _ = distinct_prompts(self.joining + [candidate])  # one prefill row per distinct prompt
        longest = max(len(p) for p in prompts)
        if self.joining and longest * len(prompts) > self.max_prefill_tokens:
            return False  # the rest join at the next step
        self.joining.append(candidate)
        return True

    def _step(self) -> None:
        if self.joining:
            self._prefill(self.joining)
            self.joining = []
        if self.batch.rows:
            self._decode_step()

    def _remove(self, sequences: list[Sequence]) -> None:
        self.joining = [s for s in self.joining if s not in sequences]
        self.batch.keep([i for i, s in enumerate(self.batch.rows) if s not in sequences])

    def _reset(self) -> None:
        self.batch = RunningBatch.empty(self.device)
        self.joining = []

    def grammar_tokenizer(self):
        logits = self.model.get_output_embeddings().weight.shape[0]  # may pad past the tokenizer's vocabulary
        return hf_vocabulary(self.tokenizer, logits, self.loaded.eos_ids)

    @torch.inference_mode()
    def _prefill(self, joining: list[Sequence]) -> None:
        """The joining prompts in one left-padded forward pass, then into the batch. A prompt
        padded beside others can come out a few bits apart from its solo run, which flips a greedy
        near-tie now and then; prefilling each alone made that rarer but not impossible, and cost
        a tenth of the throughput at 16 clients (README, Engines), so the batch is kept.
        Equal prompts (a request's n choices) are computed once and their rows copied."""
        prompts, row_of = distinct_prompts(joining)
        inputs = left_padded(prompts, self.loaded.pad_id, self.device)
        cache = DynamicCache()
        logits = self.model(**inputs, **{self.cache_keyword: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
        mask = inputs["attention_mask"]
        if len(prompts) < len(joining):
            index = torch.tensor(row_of, dtype=torch.long, device=self.device)
            logits, mask = logits.index_select(0, index), mask.index_select(0, index)
            select_cache_rows(cache, index)
        first_tokens = next_tokens(logits, joining)
        newcomers = RunningBatch(joining, cache, mask, mask.sum(dim=1),
                                 torch.tensor(first_tokens, dtype=torch.long, device=self.device))
        newcomers.keep([i for i, (s, t) in enumerate(zip(joining, first_tokens)) if self._accept(s, t)])
        self.batch.merge(newcomers)

    @torch.inference_mode()
    def _decode_step(self) -> None:
        logits = self.model(**self.batch.decode_inputs(self.cache_keyword), use_cache=True).logits[:, -1]
        tokens = next_tokens(logits, self.batch.rows)
        self.batch.next_tokens = torch.tensor(tokens, dtype=torch.long, device=self.device)
        self.batch.keep([i for i, (s, t) in enumerate(zip(self.batch.rows, tokens)) if self._accept(s, t)])

    def _accept(self, sequence: Sequence, token: int) -> bool:
        return accept_token(sequence, token, self.loaded.eos_ids, self.context_length)
