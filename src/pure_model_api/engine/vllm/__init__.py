"""The vLLM engine: vLLM's async engine in this process (vLLM itself is imported only when it starts)."""

from pure_model_api.engine.vllm.engine import VllmEngine, supports_device, vllm_installed

__all__ = ["VllmEngine", "supports_device", "vllm_installed"]
