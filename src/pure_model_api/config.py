"""One settings object. Every field is a command-line flag (--max-batch-size) and an environment
variable (PURE_API_MAX_BATCH_SIZE); a flag beats the environment, which beats the default.
List fields take a flag several times, or a comma-separated environment variable.

pydantic-settings reads the environment; the flags are an argparse parser generated from the same
fields (pydantic-settings' own CLI source would make `--no-ui` take a value and word usage errors
differently from what scripts and tests rely on)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "PURE_API_"


def default_db_path() -> str:
    from platformdirs import user_data_dir

    return str(Path(user_data_dir("pure-model-api")) / "conversations.sqlite3")


CommaList = Annotated[list[str], NoDecode]  # not JSON from the environment: split on commas below


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, env_prefix=ENV_PREFIX)

    model: str = Field("Qwen/Qwen2.5-7B-Instruct",
                       description="Hugging Face id, local model directory, .gguf file, or 'demo' (SmolLM2-135M)")
    device: str = Field("auto", description="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    dtype: str = Field("auto", description="auto (transformers: bf16 on CUDA, fp32 on CPU; vLLM: its own choice), "
                                           "float32, bfloat16 or float16")
    engine: str = Field("auto", pattern=r"^(auto|vllm|llama\.cpp|transformers)$",
                        description="auto (llama.cpp for GGUF on a CPU, else vLLM if installed for the device, "
                                    "else transformers), vllm, llama.cpp or transformers")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(5000, ge=0, le=65535, description="port to listen on")
    db: str = Field(default_factory=default_db_path,
                    description="SQLite file for conversations; ':memory:' keeps nothing across restarts")
    max_history_rounds: int = Field(20, ge=1, description="rounds (message and reply) kept per conversation")
    system_prompt: str | None = Field(None, description="optional system message for /chat conversations")
    max_batch_size: int = Field(16, ge=1, description="requests decoded together")
    max_queue: int = Field(64, ge=0, description="requests waiting for a batch slot (and, apart, for a busy "
                                                         "conversation); beyond it, 503")
    kv_token_budget: int = Field(65536, ge=1, description="prompt+max_tokens summed over running requests")
    max_model_len: int | None = Field(None, ge=1, description="context length: prompt and reply together "
                                                                 "(default: the model's)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM on a GPU: fraction of its memory to use")
    kv_cache_gb: float | None = Field(None, gt=0, description="vLLM: KV cache size in GiB (CPU default 2; "
                                                               "GPU default: what --gpu-memory-utilization leaves)")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs each layer is split across")
    pipeline_parallel_size: int = Field(1, ge=1, description="vLLM: pipeline stages (GPUs or nodes) the layers span")
    distributed_executor_backend: str | None = Field(None, pattern=r"^(mp|ray|uni|external_launcher)$",
                                                     description="vLLM: mp (one machine) or ray (several)")
    kv_offload_gb: float | None = Field(None, gt=0, description="vLLM: GiB of CPU memory its own KV offloading "
                                                                "keeps evicted prefix-cache blocks in (a GPU's cache)")
    kv_ram_gb: float = Field(2.0, ge=0, description="llama.cpp: GiB of RAM for saved conversation KV states "
                                                     "(0: none)")
    kv_disk_gb: float = Field(20.0, ge=0, description="llama.cpp: GiB of disk for saved conversation KV states, "
                                                      "kept across restarts (0: none)")
    kv_dir: str | None = Field(None, description="llama.cpp: directory of the disk tier (default: beside the "
                                                 "SQLite file, <db>.kv; none with PostgreSQL or :memory:)")
    skip_memory_check: bool = Field(False, description="load the model even where the estimate says it does not "
                                                       "fit the device's memory")
    max_body_bytes: int = Field(1 << 20, ge=1, description="largest request body; beyond it, 413")
    body_timeout: float = Field(30.0, gt=0, description="seconds a client gets to send its whole body; then 408")
    shutdown_timeout: float = Field(30.0, ge=0, description="seconds in-flight requests get on SIGTERM")
    api_key: CommaList = Field(default_factory=list,
                               description="require 'Authorization: Bearer KEY' (repeatable; env: comma list)")
    cors_origins: CommaList = Field(default_factory=list, description="browser origins allowed (repeatable, or *)")
    served_model_name: CommaList = Field(default_factory=list,
                                         description="extra names the model answers to on /v1 (repeatable)")
    no_ui: bool = Field(False, description="do not serve the web chat page at /")
    log_level: str = Field("info", description="debug, info, warning or error")

    @field_validator("api_key", "cors_origins", "served_model_name", mode="before")
    @classmethod
    def _split_commas(cls, value):
        """An environment variable is one comma-separated string; flags arrive as a list already."""
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    def kv_directory(self) -> str | None:
        """The llama.cpp engine's disk tier of saved KV states."""
        if self.kv_dir:
            return self.kv_dir
        if self.db == ":memory:" or "://" in self.db:
            return None
        return self.db + ".kv"

    @property
    def model_names(self) -> list[str]:
        return [self.model, *[n for n in self.served_model_name if n != self.model]]


def _is_list(name: str) -> bool:
    return Settings.model_fields[name].annotation == list[str]  # CommaList, its metadata aside


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pure-model-api", description="Serve one chat model over HTTP, with conversations kept on the server.",
        epilog=f"Every flag can also be set as an environment variable, e.g. {ENV_PREFIX}PORT=8080.")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if _is_list(name):
            parser.add_argument(flag, action="append", default=None, help=field.description)
        elif field.annotation is bool:
            parser.add_argument(flag, action="store_true", default=None, help=field.description)
        else:
            parser.add_argument(flag, default=None, help=field.description)
    return parser


def load_settings(argv: list[str] | None = None) -> Settings:
    """Flags over environment over defaults; a bad value, from either, exits with a usage message
    (code 2). Values given to Settings(...) beat the environment, so the flags go in that way."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return Settings(**{k: v for k, v in vars(arguments).items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in error.errors())
        parser.error(problems)
        raise  # parser.error exits; this keeps type checkers calm
