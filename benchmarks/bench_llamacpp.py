#!/usr/bin/env python3
"""The service on the llama.cpp engine against llama-cpp-python's own server, taking turns in one
run, on the demo GGUF (SmolLM2-135M-Instruct, Q4_1), and the service's other engines beside them.

1. Throughput: 1 and 8 concurrent streaming clients, 128-token replies.
2. A --turns (30) turn conversation through /chat, interleaved turn by turn with a second
   conversation, 120-token replies: time to first token per turn of the first conversation
   (the service only, unless --conversation-peer).

Targets (issue 9), on the 2-core machine: one client at least 0.9x llama-cpp-python's server;
eight clients at least 2.4x its total tokens/s; the median time to first token over the last five
turns at most 2x turn 2.

  .venv/bin/python benchmarks/bench_llamacpp.py [--json FILE] [--engines llama.cpp vllm transformers]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time

import httpx
from bench_engines import QUESTIONS, RESULTS, throughput
from common import ROOT, Server, dump_json, free_port, print_table, wait_until_up
from load import stream_chat, stream_openai


class LlamaCppPythonServer:
    """`python -m llama_cpp.server` as its README runs it, one request at a time."""

    def __init__(self, gguf: str):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "demo",
                   "--n_ctx", "4096", "--interrupt_requests", "False", "--port", str(port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")
        wait_until_up(self.url + "/v1/models", self.process)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def two_conversations(targets: dict, turns: int, max_tokens: int) -> dict[str, list[float]]:
    """Time to first token of conversation A per turn; conversation B takes a turn after each."""
    ttft: dict[str, list[float]] = {name: [] for name in targets}
    histories = {(name, c): [] for name in targets for c in "AB"}
    stamp = int(time.time())
    async with httpx.AsyncClient(timeout=600) as client:
        for turn in range(turns):
            for conversation in "AB":
                question = f"{conversation}{turn + 1}. {QUESTIONS[(turn + (conversation == 'B')) % len(QUESTIONS)]}"
                for name, (url, protocol) in targets.items():
                    client.base_url = url
                    started = time.perf_counter()
                    if protocol == "chat":
                        first, _, _ = await stream_chat(client, {
                            "message": question, "session_id": f"{conversation}-{stamp}", "temperature": 0,
                            "max_tokens": max_tokens, "ignore_eos": True})
                    else:
                        messages = histories[name, conversation] + [{"role": "user", "content": question}]
                        first, _, reply = await stream_openai(client, {
                            "model": "demo", "messages": messages, "temperature": 0, "max_tokens": max_tokens,
                            "min_tokens": max_tokens})
                        histories[name, conversation] = messages + [{"role": "assistant", "content": reply}]
                    if conversation == "A":
                        ttft[name].append((first or time.perf_counter()) - started)
    return ttft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["llama.cpp"])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--conversation-peer", action="store_true",
                        help="also run the conversation on llama-cpp-python's server (its --n_ctx 4096 "
                             "holds about 28 turns of full history)")
    args = parser.parse_args()

    from pure_model_api.engine.loading import find_demo_gguf

    servers, targets = [], {}
    try:
        own = LlamaCppPythonServer(str(find_demo_gguf()))
        servers.append(own)
        targets["llama-cpp-python-server"] = (own.url, "openai")
        for engine in args.engines:
            RESULTS.mkdir(exist_ok=True)
            server = Server("--engine", engine, log=RESULTS / f"server-{engine}.log")
            servers.append(server)
            targets[f"service-{engine}"] = (server.url, "chat")
        tables = [row for c in (1, 8) for row in throughput(targets, c, args.rounds, 128)]
        print_table(tables, ["target", "clients", "tokens_per_s", "ttft_p50_s", "errors", "best_tokens_per_s"])
        talkers = {k: v for k, v in targets.items() if args.conversation_peer or v[1] == "chat"}
        ttft = asyncio.run(two_conversations(talkers, args.turns, 120))
    finally:
        for server in servers:
            server.stop()
    reference = {r["clients"]: r["tokens_per_s"] for r in tables if r["target"] == "llama-cpp-python-server"}
    for row in tables:
        row["vs_llama_cpp_python"] = row["tokens_per_s"] / reference[row["clients"]]
    verdict = [{"target": name, "turn2_s": values[1], "last5_median_s": statistics.median(values[-5:]),
                "last5_over_turn2": statistics.median(values[-5:]) / values[1], "worst_s": max(values)}
               for name, values in ttft.items()]
    print()
    print_table(tables, ["target", "clients", "tokens_per_s", "vs_llama_cpp_python", "ttft_p50_s", "errors"])
    print()
    print_table([{"turn": i + 1, **{k: v[i] for k, v in ttft.items()}} for i in range(args.turns)], ["turn", *ttft])
    print()
    print_table(verdict, list(verdict[0]))
    dump_json({"machine": os.uname().nodename, "cpus": os.cpu_count(), "throughput": tables,
               "conversation_ttft_s": ttft, "conversation": verdict}, args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
