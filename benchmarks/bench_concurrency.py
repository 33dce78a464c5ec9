#!/usr/bin/env python3
"""Many users at once: the service under N concurrent streaming clients against transformers'
`model.generate` with a static batch of N, same weights and dtype, measured in the same run.

    .venv/bin/python benchmarks/bench_concurrency.py [--concurrency 1 16] [--max-tokens 128]

Targets (2-core CPU, demo model, 128-token replies): c=16 tokens/s >= 1.0x generate(batch 16);
c=1 >= 0.95x generate(batch 1); c=16 TTFT p50 <= 2 s with no errors."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import GenerateBaseline, Server, dump_json, print_table  # noqa: E402
from load import load  # noqa: E402


def merge_runs(runs: list[dict]) -> dict:
    """Medians over the repeats; request and error counts are summed."""
    merged = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key not in
              ("requests", "errors", "output_tokens", "concurrency")}
    merged.update(concurrency=runs[0]["concurrency"], requests=sum(r["requests"] for r in runs),
                  errors=sum(r["errors"] for r in runs))
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-ignore-eos", action="store_true", help="let replies end at end-of-sequence")
    parser.add_argument("--url", help="measure a server already running here instead of starting one")
    parser.add_argument("--json", help="also write the JSON report to this file")
    args = parser.parse_args()

    server = None if args.url else Server("--engine", "transformers", "--dtype", args.dtype,
                                               "--max-batch-size", str(max(args.concurrency)))
    url = args.url or server.url
    baseline = GenerateBaseline(args.dtype)
    rows = []
    try:
        for concurrency in args.concurrency:
            load(url, concurrency, 1, 8)  # warm-up, both sides
            baseline.tokens_per_s(concurrency, 8)
            runs, generates = [], []
            for _ in range(args.repeats):  # taking turns, so that noise hits both alike
                runs.append(load(url, concurrency, args.requests_per_client, args.max_tokens, not args.no_ignore_eos))
                generates.append(baseline.tokens_per_s(concurrency, args.max_tokens))
            row = merge_runs(runs)
            row["generate_tokens_per_s"] = statistics.median(generates)
            row["ratio"] = row["tokens_per_s"] / row["generate_tokens_per_s"]
            rows.append(row)
    finally:
        if server:
            server.stop()
    print_table(rows, ["concurrency", "requests", "errors", "tokens_per_s", "generate_tokens_per_s", "ratio",
                       "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s"])
    dump_json({"benchmark": "concurrency", "dtype": args.dtype, "max_tokens": args.max_tokens, "results": rows},
              args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
