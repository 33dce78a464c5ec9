"""The engine as the rest of the service sees it: prompts in, async token streams out."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pure_model_api.engine.loading import LoadedModel, load_model
from pure_model_api.engine.params import SamplingParams
from pure_model_api.engine.scheduler import RequestHandle, Scheduler
from pure_model_api.errors import ContextLengthExceeded


@dataclass(frozen=True)
class EngineOptions:
    max_batch_size: int = 16
    max_queue: int = 64
    kv_token_budget: int = 65536


class InferenceEngine:
    def __init__(self, loaded: LoadedModel, options: EngineOptions = EngineOptions()):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.context_length = loaded.context_length
        self.scheduler = Scheduler(
            loaded.model, loaded.tokenizer, eos_ids=loaded.eos_ids, pad_id=loaded.pad_id,
            context_length=loaded.context_length, max_batch_size=options.max_batch_size,
            max_queue=options.max_queue, kv_token_budget=options.kv_token_budget)
        self.weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
        self.scheduler.start()

    @classmethod
    def load(cls, model: str, device: str = "auto", dtype: str = "auto",
             options: EngineOptions = EngineOptions()) -> InferenceEngine:
        return cls(load_model(model, device, dtype), options)

    # ---- prompts ----
    def render_chat(self, messages: list[dict]) -> list[int]:
        """The tokenizer's own chat template, ending with the assistant's turn opened."""
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(encoded, "keys"):  # transformers 5 returns a BatchEncoding
            encoded = encoded["input_ids"]
        return list(encoded)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    # ---- generation ----
    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        needed = len(prompt_ids) + params.max_tokens
        if needed > self.context_length:
            raise ContextLengthExceeded(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: "
                f"together {needed}, beyond the model's context of {self.context_length} tokens")
        return self.scheduler.submit(prompt_ids, params)

    def close(self) -> None:
        self.scheduler.stop()

    # ---- what operators see ----
    def describe(self) -> dict:
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
