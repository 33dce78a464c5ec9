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
import statistics
import sys
import time

import httpx
from bench_engines import QUESTIONS, RESULTS, throughput
from common import ROOT, PeerServer, Server, print_table, report_conversation
from load import stream_chat, stream_openai


def llama_cpp_python_server(gguf: str) -> PeerServer:
    """`python -m llama_cpp.server` as the issue runs it: one request at a time."""
    return PeerServer("llama_cpp.server", ["--model", gguf, "--model_alias", "demo", "--n_ctx", "4096",
                                           "--interrupt_requests", "False"], health="/v1/models")


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
        own = llama_cpp_python_server(str(find_demo_gguf()))
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
    report_conversation(tables, ttft, verdict, args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
