"""Shared test helpers: tiny random models, the demo model, and real server processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pure_model_api.client import sse

ROOT = Path(__file__).resolve().parents[1]


def demo_model_dir() -> Path:
    from pure_model_api.engine.loading import DEMO_MODEL, model_source

    return Path(model_source(DEMO_MODEL, None))


def build_tiny_model(family: str, target: Path, always: str | None = None) -> Path:
    """A random-weight Llama or Qwen2 model, a few MB, with the demo model's tokenizer and chat template.

    `always`: a character (one token) the model then writes at every step, on every engine: the
    layers add nothing to the residual stream, the final norm keeps one dimension, and there the
    character's (tied) embedding is 100 times any other token's."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir())
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    config = LlamaConfig(**shape) if family == "llama" else Qwen2Config(**shape)
    model_class = LlamaForCausalLM if family == "llama" else Qwen2ForCausalLM
    torch.manual_seed(0)
    model = model_class(config)
    if always is not None:
        (token,) = tokenizer.encode(always, add_special_tokens=False)
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            model.model.norm.weight.zero_()[0] = 1.0
            embeddings = model.model.embed_tokens.weight
            embeddings[:, 0] = 0.01
            embeddings[token, 0] = 1.0
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


# llama.cpp's own chat templates and vocabulary-only GGUF files, from the llama-cpp-python sdist
# (`make setup` extracts them): the real prompt formats and tokenizers of Qwen and Llama models.
LLAMA_MODELS = Path(sys.prefix) / "share" / "llama.cpp-models"


def family_tokenizer(vocab: str, template: str):
    """A real tokenizer (`qwen2`, `llama-bpe`) with a real chat template (a name under templates/),
    as the llama.cpp engine would build them from a GGUF file holding both."""
    from llama_cpp._internals import LlamaModel

    from pure_model_api.engine.llamacpp.gguf_chat import GgufTokenizer

    if not LLAMA_MODELS.is_dir():
        raise RuntimeError(f"{LLAMA_MODELS} is missing: `make setup` extracts it from the llama-cpp-python sdist")
    params = LlamaModel.default_params()
    params.vocab_only = True
    model = LlamaModel(path_model=str(LLAMA_MODELS / f"ggml-vocab-{vocab}.gguf"), params=params, verbose=False)
    text = (LLAMA_MODELS / "templates" / f"{template}.jinja").read_text()
    return GgufTokenizer(model, {**model.metadata(), "tokenizer.chat_template": text})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_idle(url: str, headers: dict | None = None, timeout: float = 60) -> dict:
    """Until the server runs and queues nothing, twice half a second apart (a background warm-up is
    queued a moment after the reply that asks for it); its last /status."""
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 2:
        status = httpx.get(url + "/status", headers=headers).json()
        quiet = 0 if status["running_requests"] + status["queued_requests"] else quiet + 1
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    return status


class ServerProcess:
    """`python pure_model_api.py ...` as a user starts it, on a free port."""

    def __init__(self, *args: str, db: Path | str, env: dict | None = None, engine: str = "transformers",
                 log_dir: Path | None = None):
        """`db`: a SQLite path (the log goes beside it) or a postgresql:// URL (the log goes in `log_dir`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.engine = engine
        engine_args = ["--engine", engine] + (["--kv-cache-gb", "1"] if engine == "vllm" else [])
        self.args = ["--model", "demo", "--port", str(self.port), "--db", str(db), *engine_args, *args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.log_path = (log_dir / f"server.{self.port}.log") if log_dir else Path(db).with_suffix(f".{self.port}.log")

    def start(self, wait: bool = True) -> ServerProcess:
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, str(ROOT / "pure_model_api.py"), *self.args],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def engine_holds(self, at_least: int, timeout: float = 120.0) -> None:
        """Wait until the engine holds `at_least` requests (running or queued, as /status says):
        what a test used to guess with a fixed sleep."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                status = (await client.get("/status")).json()
                if status["running_requests"] + status["queued_requests"] >= at_least:
                    return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"the engine never held {at_least} requests")

    async def refuses_connections(self, timeout: float = 30.0) -> None:
        """Wait until the server has closed its listening socket (as it does on SIGTERM)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("the server still accepts connections")

    def stop(self, sig=signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (vLLM's engine core and its worker, for one)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (not exited, not zombies)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def sse_events(response) -> list[tuple[str, dict | str]]:
    """(event name, decoded data) for each server-sent event of a streaming response, read as the
    client reads them."""
    return list(sse.sse_events(response))


async def asse_events(response) -> list[tuple[str, dict | str]]:
    return [event async for event in sse.asse_events(response)]
