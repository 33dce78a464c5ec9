"""The transformers engine: any model transformers loads, on a CPU or CUDA, batched by our own step."""

from pure_model_api.engine.transformers.engine import TransformersEngine

__all__ = ["TransformersEngine"]
