"""The inference engine: loading, the batching scheduler, sampling and the KV cache. No HTTP here."""

from pure_model_api.engine.params import Finished, SamplingParams, TextDelta

__all__ = ["Finished", "SamplingParams", "TextDelta"]
