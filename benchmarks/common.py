"""Shared by the benchmark scripts: the transformers baseline, a server process, percentiles."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a short story about a lighthouse keeper.", "Explain how rainbows form.",
    "Describe a busy market in the morning.", "What makes a good friend?", "Tell me about the history of tea.",
    "Explain photosynthesis to a child.", "Describe the life of a honeybee.", "Why do we dream?",
    "Write a poem about autumn leaves.", "How does a bicycle stay upright?", "Describe a thunderstorm at sea.",
    "What is the best way to learn to cook?", "Explain why the sky is blue.", "Tell me about the moon.",
    "Describe a walk through a forest.", "How do airplanes fly?",
]


class GenerateBaseline:
    """transformers' own `model.generate`: static batch, greedy, the same weights and dtype.

    The server sits idle (its inference thread asleep) while this runs, so the two can take
    turns on the same cores within one run: noise on a shared machine hits both alike."""

    def __init__(self, dtype: str = "float32"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from pure_model_api.engine.loading import DEMO_MODEL, model_source, resolve_dtype

        source = model_source(DEMO_MODEL, None)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype, torch.device("cpu"))).eval()

    def tokens_per_s(self, batch_size: int, max_tokens: int) -> float:
        texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                    tokenize=False) for p in (PROMPTS * 4)[:batch_size]]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with self.torch.inference_mode():
            started = time.perf_counter()
            self.model.generate(**inputs, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False)
            return batch_size * max_tokens / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The service as users run it: `python pure_model_api.py --model demo`, on a free port."""

    def __init__(self, *args: str, log: Path | None = None):
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, str(ROOT / "pure_model_api.py"), "--model", "demo", "--port", port,
                   "--db", ":memory:", "--log-level", "warning", *args]
        output = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ})
        wait_until_up(self.url + "/health", self.process)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


class PeerServer:
    """A peer's own server (`python -m MODULE ARGS --port N`), started from /tmp so that the
    launcher pure_model_api.py cannot shadow anything, and waited for until `health` answers."""

    def __init__(self, module: str, args: list[str], health: str):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", module, *args, "--port", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")
        wait_until_up(self.url + health, self.process)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 600) -> None:
    """Poll `url` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not come up")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(int(round(q / 100 * (len(ordered) - 1))), len(ordered) - 1)
    return ordered[index]


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).rjust(widths[c]) for c in columns))


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def report_conversation(tables: list[dict], ttft: dict[str, list[float]], verdict: list[dict],
                        path: str | None) -> None:
    """The per-turn table, the verdict table, then everything as JSON."""
    turns = len(next(iter(ttft.values())))
    print()
    print_table([{"turn": i + 1, **{k: v[i] for k, v in ttft.items()}} for i in range(turns)], ["turn", *ttft])
    print()
    print_table(verdict, list(verdict[0]))
    dump_json({"machine": os.uname().nodename, "cpus": os.cpu_count(), "throughput": tables,
               "conversation_ttft_s": ttft, "conversation": verdict}, path)


def dump_json(payload: dict, path: str | None) -> None:
    text = json.dumps(payload, indent=2)
    print(text)
    if path:
        Path(path).write_text(text)
