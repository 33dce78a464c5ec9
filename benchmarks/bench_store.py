"""The conversation store past one machine: SQLite against PostgreSQL, and affinity routing.

1. The store path: one replica, 32 concurrent clients over 64 conversations, one-token replies from
   a tiny random model (so the engine costs little and the request path, which reads the history
   and stores each round in a transaction, is what is measured): requests/s and p50/p99 latency,
   on SQLite and on PostgreSQL, taking turns in one run.
2. Cache hits across two replicas on one PostgreSQL database, behind nginx: the prefix-cache hit
   rate (cached prompt tokens / prompt tokens, from both replicas' /metrics) with the shipped
   consistent-hash config (deploy/nginx-pure-model-api.conf) and with plain round robin, on the
   llama.cpp engine and the demo model.

    .venv/bin/python benchmarks/bench_store.py [--seconds 30] [--json results/store.json]

Needs Debian's postgresql and nginx (as the tests do)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import ROOT, Server, dump_json, free_port, percentile, print_table

sys.path.insert(0, str(ROOT / "tests"))
from helpers import build_tiny_model  # noqa: E402
from postgres import PostgresServer, temporary_server  # noqa: E402

CLIENTS, CONVERSATIONS = 32, 64


async def store_path_load(url: str, seconds: float) -> dict:
    free = asyncio.Queue()
    for n in range(CONVERSATIONS):
        free.put_nowait(f"bench-{n}")
    latencies, errors = [], 0

    async def client(number: int, until: float) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while time.monotonic() < until:
                conversation = await free.get()
                started = time.perf_counter()
                try:
                    answer = await http.post("/chat", json={"message": f"turn from client {number}", "max_tokens": 1,
                                                            "session_id": conversation})
                    errors += answer.status_code != 200
                finally:
                    free.put_nowait(conversation)
                latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*[client(n, started + seconds) for n in range(CLIENTS)])
    elapsed = time.monotonic() - started
    return {"requests": len(latencies), "errors": errors, "requests_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99)}


def measure_store_path(postgres: PostgresServer, tiny: Path, seconds: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind, db in (("sqlite", str(Path(folder) / "c.sqlite3")), ("postgresql", postgres.new_database())):
            server = Server("--model", str(tiny), "--engine", "transformers", "--db", db, "--max-batch-size", "32")
            try:
                asyncio.run(store_path_load(server.url, 3))  # warm-up
                row = {"store": kind, **asyncio.run(store_path_load(server.url, seconds))}
                row["store_op_ms"] = httpx.get(server.url + "/status").json()["store"]["mean_latency_ms"]
                rows.append(row)
            finally:
                server.stop()
    return rows


class Nginx:
    def __init__(self, replicas: list[Server], folder: Path, affinity: bool):
        self.port = free_port()
        site = (ROOT / "deploy" / "nginx-pure-model-api.conf").read_text()
        for placeholder, server in zip(("127.0.0.1:5001", "127.0.0.1:5002"), replicas):
            site = site.replace(placeholder, server.url.removeprefix("http://"))
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{self.port};")
        if not affinity:
            site = re.sub(r"\n\s*hash \$pure_model_api_key consistent;", "", site)  # round robin
        for name in ("logs", "temp"):
            (folder / name).mkdir(exist_ok=True)
        (folder / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "") + "error_log logs/error.log;\npid logs/nginx.pid;\n"
            "events {}\nhttp {\naccess_log off;\nclient_body_temp_path temp/body;\nproxy_temp_path temp/proxy;\n"
            + site + "\n}\n")
        self.process = subprocess.Popen(["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf"),
                                         "-g", "daemon off;"])
        self.url = f"http://127.0.0.1:{self.port}"
        time.sleep(1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(30)


def prompt_counters(replicas: list[Server]) -> tuple[float, float]:
    prompt = cached = 0.0
    for server in replicas:
        text = httpx.get(server.url + "/metrics").text
        prompt += float(re.search(r"^pure_api_prompt_tokens_total (\S+)", text, re.M).group(1))
        cached += float(re.search(r"^pure_api_cached_prompt_tokens_total (\S+)", text, re.M).group(1))
    return prompt, cached


async def conversations_through(url: str, conversations: int, turns: int) -> list[float]:
    latencies = []

    async def one(name: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            for turn in range(turns):
                started = time.perf_counter()
                answer = await http.post("/chat", json={"message": f"{name}, turn {turn}: {random.choice(TOPICS)}",
                                                        "max_tokens": 16, "session_id": name},
                                         headers={"X-Conversation-ID": name})
                answer.raise_for_status()
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*[one(f"conv-{n}") for n in range(conversations)])
    return latencies


TOPICS = ["tell me about rivers.", "what do owls eat?", "how is tea made?", "why is the sea salty?"]


def measure_affinity(postgres: PostgresServer, turns: int) -> list[dict]:
    rows = []
    for affinity in (True, False):
        db = postgres.new_database()
        replicas = [Server("--engine", "llama.cpp", "--db", db) for _ in range(2)]
        with tempfile.TemporaryDirectory() as folder:
            nginx = Nginx(replicas, Path(folder), affinity)
            try:
                before = prompt_counters(replicas)
                latencies = asyncio.run(conversations_through(nginx.url, 8, turns))
                prompt, cached = (a - b for a, b in zip(prompt_counters(replicas), before))
                rows.append({"routing": "consistent hash" if affinity else "round robin",
                             "prompt_tokens": int(prompt), "cached_tokens": int(cached),
                             "hit_rate": cached / prompt if prompt else 0.0,
                             "mean_latency_s": sum(latencies) / len(latencies)})
            finally:
                nginx.stop()
                for server in replicas:
                    server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    with temporary_server() as postgres:
        tiny = build_tiny_model("llama", postgres.root / "tiny-llama")
        store_rows = measure_store_path(postgres, tiny, args.seconds)
        print_table(store_rows, ["store", "requests", "errors", "requests_per_s", "p50_ms", "p99_ms", "store_op_ms"])
        affinity_rows = measure_affinity(postgres, args.turns)
        print()
        print_table(affinity_rows, ["routing", "prompt_tokens", "cached_tokens", "hit_rate", "mean_latency_s"])
    dump_json({"machine": os.uname().nodename, "cpus": os.cpu_count(), "clients": CLIENTS,
               "conversations": CONVERSATIONS, "store_path": store_rows, "affinity": affinity_rows}, args.json)


if __name__ == "__main__":
    main()
