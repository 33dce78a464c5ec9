#!/usr/bin/env python3
"""The service on each engine against vLLM's own OpenAI server, taking turns in one run.

1. Throughput: 1 and 16 concurrent streaming clients, 128-token replies (ignore_eos), fresh
   conversations. The service through /chat, vLLM's server through /v1/chat/completions.
2. A long conversation: --turns turns (30) through /chat, 120-token replies, temperature 0;
   vLLM's own server is given its whole history every turn (it keeps no conversations). Turns
   alternate between the targets, so noise on this shared machine hits all of them alike.

Targets (issue 7): the service on vLLM at least 0.9x vLLM's server at 1 and 16 clients with no
errors; time to first token at the median turn at most 1.2x vLLM's, over 2.5x at no more than one
turn in ten, and the median of the last five turns at most 2x turn 2.

  .venv/bin/python benchmarks/bench_engines.py [--json FILE] [--engines vllm transformers] [--turns 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx
from common import ROOT, PeerServer, Server, print_table, report_conversation
from load import load, stream_chat, stream_openai

RESULTS = ROOT / "benchmarks" / "results"

QUESTIONS = [
    "Tell me about the history of the bicycle.", "What happened next in that story?",
    "Explain it again, more simply.", "Give me three examples.", "Which of those is the oldest?",
    "Describe how it works in detail.", "What are the common problems?", "How do people fix them?",
    "Summarize what we discussed so far.", "What should I read to learn more?",
]


def vllm_own_server(model_dir: str, kv_cache_gb: float) -> PeerServer:
    """`python -m vllm.entrypoints.openai.api_server` on the same model directory and settings."""
    return PeerServer("vllm.entrypoints.openai.api_server", [
        "--model", model_dir, "--served-model-name", "demo", "--dtype", "float32", "--max-num-seqs", "16",
        "--kv-cache-memory-bytes", str(int(kv_cache_gb * (1 << 30))), "--enable-prefix-caching",
        "--disable-log-stats"], health="/health")


def throughput(targets: dict, concurrency: int, rounds: int, max_tokens: int) -> list[dict]:
    results: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(rounds):  # take turns: each round runs every target once
        for name, (url, protocol) in targets.items():
            results[name].append(load(url, concurrency, 1 if concurrency > 1 else 3, max_tokens,
                                      protocol=protocol))
    rows = []
    for name, runs in results.items():
        best = max(runs, key=lambda r: r["tokens_per_s"])
        rows.append({"target": name, "clients": concurrency, "tokens_per_s": statistics.median(
            r["tokens_per_s"] for r in runs), "ttft_p50_s": statistics.median(r["ttft_p50_s"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "best_tokens_per_s": best["tokens_per_s"]})
    return rows


async def conversation(targets: dict, turns: int, max_tokens: int) -> dict[str, list[float]]:
    """Time to first token per turn, for each target, turns interleaved across targets."""
    ttft: dict[str, list[float]] = {name: [] for name in targets}
    histories: dict[str, list[dict]] = {name: [] for name in targets}
    session = f"bench-{int(time.time())}"
    async with httpx.AsyncClient(timeout=600) as client:
        for turn in range(turns):
            question = f"Turn {turn + 1}. {QUESTIONS[turn % len(QUESTIONS)]}"
            for name, (url, protocol) in targets.items():
                client.base_url = url
                started = time.perf_counter()
                if protocol == "chat":
                    first, _, reply = await stream_chat(client, {
                        "message": question, "session_id": session, "temperature": 0, "max_tokens": max_tokens,
                        "ignore_eos": True})
                else:
                    messages = histories[name] + [{"role": "user", "content": question}]
                    first, _, reply = await stream_openai(client, {
                        "model": "demo", "messages": messages, "temperature": 0, "max_tokens": max_tokens,
                        "ignore_eos": True})
                    histories[name] = messages + [{"role": "assistant", "content": reply}]
                ttft[name].append((first or time.perf_counter()) - started)
    return ttft


def conversation_verdict(ttft: dict[str, list[float]], reference: str) -> list[dict]:
    rows = []
    for name, values in ttft.items():
        ratios = [v / r for v, r in zip(values, ttft[reference])]
        rows.append({"target": name, "turn2_s": values[1], "median_s": statistics.median(values),
                     "last5_median_s": statistics.median(values[-5:]), "worst_s": max(values),
                     "median_ratio_vs_vllm": statistics.median(ratios),
                     "turns_over_2.5x": sum(r > 2.5 for r in ratios),
                     "last5_over_turn2": statistics.median(values[-5:]) / values[1]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["vllm", "transformers"])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="throughput runs per target, taking turns")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()

    from pure_model_api.engine.loading import DEMO_MODEL, model_source

    servers, targets = [], {}
    try:
        own = vllm_own_server(model_source(DEMO_MODEL, None), kv_cache_gb=2)
        servers.append(own)
        targets["vllm-own-server"] = (own.url, "openai")
        for engine in args.engines:
            RESULTS.mkdir(exist_ok=True)
            server = Server("--engine", engine, log=RESULTS / f"server-{engine}.log")
            servers.append(server)
            targets[f"service-{engine}"] = (server.url, "chat")
        tables = [row for c in args.concurrency for row in throughput(targets, c, args.rounds, 128)]
        print_table(tables, ["target", "clients", "tokens_per_s", "ttft_p50_s", "errors", "best_tokens_per_s"])
        ttft = asyncio.run(conversation(targets, args.turns, 120))
    finally:
        for server in servers:
            server.stop()
    verdict = conversation_verdict(ttft, "vllm-own-server")
    report_conversation(tables, ttft, verdict, args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
