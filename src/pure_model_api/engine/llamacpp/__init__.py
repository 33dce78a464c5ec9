"""The llama.cpp engine: GGUF files on a CPU, through llama-cpp-python's low-level API. No torch."""

from pure_model_api.engine.llamacpp.engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]
