"""Whether a model fits the device, asked before loading it: the weights (GGUF file sizes, or the
safetensors index in the dtype the engine will use) and the KV cache the flags ask for, against
the host memory (a CPU) or the GPU's. A model that cannot fit is one line at startup, with what
would fit instead, not an out-of-memory kill minutes later. No torch here unless on a GPU.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from pure_model_api.errors import ModelLoadError

GB = 1e9
CPU_KV_CACHE_GB = 2.0  # vLLM's KV cache on a CPU unless --kv-cache-gb (engine/vllm/engine.py)
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    needed: int  # bytes
    available: int
    where: str  # "host memory" or "GPU memory"
    detail: str  # what the need is made of

    def as_dict(self) -> dict:
        return asdict(self)


def kv_bytes_per_token(metadata: dict) -> int:
    """f16 K and V for every layer, from GGUF metadata (0 where it does not say)."""
    arch = str(metadata.get("general.architecture", ""))
    try:
        layers = int(metadata[f"{arch}.block_count"])
        heads = int(metadata[f"{arch}.attention.head_count"])
        kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads))
        width = int(metadata[f"{arch}.embedding_length"])
    except (KeyError, ValueError, TypeError):
        return 0
    return 2 * layers * kv_heads * (width // heads) * 2


def gguf_estimate(files: list[Path], options) -> MemoryEstimate | None:
    import gguf

    weights = sum(f.stat().st_size for f in files)
    try:
        fields = gguf.GGUFReader(files[0]).fields
    except (ValueError, OSError, KeyError, IndexError):
        return None  # not a GGUF file gguf-py can read: llama.cpp says why, in one line, when it loads it
    metadata = {key: field.contents() for key, field in fields.items() if not key.startswith("tokenizer.")}
    n_ctx = max(options.kv_token_budget, 128)
    kv = kv_bytes_per_token(metadata) * n_ctx
    tiers = int(options.kv_ram_gb * 2**30)
    return _against_host(weights + kv + tiers, f"weights {weights / GB:.1f} GB, KV cache for {n_ctx} tokens "
                         f"{kv / GB:.1f} GB, saved caches up to {tiers / GB:.1f} GB (--kv-ram-gb)")


def hf_estimate(model: str, source: Path | None, engine: str, options, on_gpu: bool) -> MemoryEstimate | None:
    """From config.json and the safetensors index (a local directory, or the Hugging Face cache)."""
    config, index = _hf_file(model, source, "config.json"), _hf_file(model, source, "model.safetensors.index.json")
    if config is None:
        return None
    config = json.loads(config.read_text())
    stored = DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype") or "float32"), 4)
    if index is not None:
        stored_bytes = int(json.loads(index.read_text()).get("metadata", {}).get("total_size", 0))
    else:
        stored_bytes = sum(f.stat().st_size for f in source.glob("*.safetensors")) if source else 0
    if not stored_bytes:
        return None
    run = DTYPE_BYTES.get(options.dtype, 2 if on_gpu else 4)  # auto: bf16 on a GPU, float32 on a CPU
    weights = stored_bytes // stored * run
    detail = f"weights {weights / GB:.1f} GB in {'float32' if run == 4 else '16-bit'}"
    if on_gpu:
        return _against_gpu(weights, detail, options, engine)
    if engine == "vllm":
        kv = int((options.kv_cache_gb or CPU_KV_CACHE_GB) * 2**30)
        detail += f", KV cache {kv / GB:.1f} GB (--kv-cache-gb)"
    else:
        heads = int(config.get("num_attention_heads", 1))
        per_token = (2 * int(config.get("num_hidden_layers", 0)) * int(config.get("num_key_value_heads", heads))
                     * int(config.get("head_dim") or int(config.get("hidden_size", 0)) // heads) * run)
        kv = per_token * options.kv_token_budget
        detail += f", KV cache for {options.kv_token_budget} tokens {kv / GB:.1f} GB"
    return _against_host(weights + kv, detail)


def _hf_file(model: str, source: Path | None, name: str) -> Path | None:
    if source is not None:
        return source / name if (source / name).is_file() else None
    from pure_model_api.engine.hub import cached_file

    return cached_file(model, name) if re.fullmatch(r"[\w.-]+/[\w.-]+", model) else None


def _against_host(needed: int, detail: str) -> MemoryEstimate | None:
    available = host_memory_available()
    return MemoryEstimate(needed, available, "host memory", detail) if available else None


def _against_gpu(weights: int, detail: str, options, engine: str) -> MemoryEstimate | None:
    import torch

    index = int(options.device.split(":")[1]) if ":" in options.device else 0
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None  # the loader says, in its words, that the device is not there
    free, total = torch.cuda.mem_get_info(index)
    usable = int(total * options.gpu_memory_utilization) if engine == "vllm" else free
    devices = options.tensor_parallel_size * options.pipeline_parallel_size if engine == "vllm" else 1
    return MemoryEstimate(weights, usable * devices, "GPU memory", detail)


def host_memory_available() -> int:
    """MemAvailable (Linux), else what the OS says is free; 0 where neither can be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def check_fits(model: str, engine: str, estimate: MemoryEstimate) -> None:
    if estimate.needed <= estimate.available:
        return
    raise ModelLoadError(
        f"{model} needs about {estimate.needed / GB:.1f} GB on {engine} ({estimate.detail}) and this machine has "
        f"{estimate.available / GB:.1f} GB of {estimate.where} available: {instead(model, estimate)}; "
        f"--skip-memory-check loads it anyway")


def instead(model: str, estimate: MemoryEstimate) -> str:
    """The nearest thing that would fit."""
    from pure_model_api.engine.hub import LLAMA, LLAMA_GGUF

    qwen = re.fullmatch(r"Qwen/Qwen2\.5-([\d.]+B)-Instruct", model)
    if estimate.where == "host memory" and qwen:
        return (f"try --model {model}-GGUF:Q4_K_M (./start_api.sh --qwen) on llama.cpp, a smaller size "
                f"(./start_api.sh --qwen --qwen-size 1.5b), or a GPU")
    if estimate.where == "host memory" and model == LLAMA:
        return f"try --model {LLAMA_GGUF} (./start_api.sh --llama) on llama.cpp, or a GPU"
    if estimate.where == "host memory":
        return "try a quantized GGUF of the same model on llama.cpp (--model org/repo-GGUF:Q4_K_M), a smaller model, " \
               "or a GPU"
    return "try more GPUs (--tensor-parallel-size), a smaller model, or a quantized one"
