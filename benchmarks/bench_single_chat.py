#!/usr/bin/env python3
"""One chat at a time: a greedy 128-token reply through the whole service (HTTP, streaming,
history, store) against transformers' `model.generate` on the same weights, in the same run.

    .venv/bin/python benchmarks/bench_single_chat.py [--max-tokens 128] [--dtype float32]

Targets (2-core CPU, demo model): tokens/s >= model.generate batch 1; first token <= 0.5 s."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import GenerateBaseline, Server, dump_json, print_table  # noqa: E402
from load import load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", help="also write the JSON report to this file")
    args = parser.parse_args()

    server = Server("--engine", "transformers", "--dtype", args.dtype)  # against its own model.generate
    baseline = GenerateBaseline(args.dtype)
    try:
        load(server.url, 1, 1, 8)  # warm-up, both sides
        baseline.tokens_per_s(1, 8)
        services, generates = [], []
        for _ in range(args.repeats):  # taking turns, so that noise hits both alike
            services.append(load(server.url, 1, 1, args.max_tokens))
            generates.append(baseline.tokens_per_s(1, args.max_tokens))
    finally:
        server.stop()
    service_tps = statistics.median(s["tokens_per_s"] for s in services)
    generate = statistics.median(generates)
    ttfts = [s["ttft_p50_s"] for s in services]
    row = {"dtype": args.dtype, "service_tokens_per_s": service_tps, "generate_tokens_per_s": generate,
           "ratio": service_tps / generate, "ttft_p50_s": statistics.median(ttfts), "ttft_max_s": max(ttfts),
           "errors": sum(s["errors"] for s in services)}
    print_table([row], list(row))
    dump_json({"benchmark": "single_chat", "max_tokens": args.max_tokens, "results": [row]}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
