"""The transformers engine: the portable reference (any CPU, CUDA, macOS), batched by our own
scheduler (scheduler.py) over a model loaded through transformers' Auto classes (loading.py)."""

from __future__ import annotations

import torch

from pure_model_api.engine.base import Engine, EngineOptions
from pure_model_api.engine.loading import LoadedModel, load_model
from pure_model_api.engine.params import SamplingParams
from pure_model_api.engine.scheduler import RequestHandle, Scheduler


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, loaded: LoadedModel, options: EngineOptions = EngineOptions()):
        super().__init__(loaded.tokenizer, loaded.context_length)
        self.loaded = loaded
        self.scheduler = Scheduler(
            loaded.model, loaded.tokenizer, eos_ids=loaded.eos_ids, pad_id=loaded.pad_id,
            context_length=loaded.context_length, max_batch_size=options.max_batch_size,
            max_queue=options.max_queue, kv_token_budget=options.kv_token_budget)
        self.scheduler.on_failure = lambda failure: setattr(self, "failure", failure)
        self.weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        self.scheduler.start()

    @classmethod
    def load(cls, options: EngineOptions) -> TransformersEngine:
        return cls(load_model(options.model, options.device, options.dtype), options)

    def _submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        return self.scheduler.submit(prompt_ids, params)

    def close(self) -> None:
        self.scheduler.stop()

    def _describe(self) -> dict:
        running, waiting = self.scheduler.counts()
        kv_bytes = self.scheduler.batch.kv_bytes()
        device = self.loaded.device
        if device.type == "cuda":
            memory = torch.cuda.memory_allocated(device)
        else:
            memory = self.weight_bytes + kv_bytes
        return {
            "model_name": self.loaded.name,
            "device": str(device),
            "dtype": str(self.loaded.dtype).removeprefix("torch."),
            "context_length": self.context_length,
            "memory_allocated": memory,
            "kv_cache_bytes": kv_bytes,
            "running_requests": running,
            "queued_requests": waiting,
            "max_batch_size": self.scheduler.max_batch_size,
        }
