#!/usr/bin/env python3
"""What structured outputs cost: tokens/s with a JSON schema against without, on each engine, and
the same requests on vLLM's own OpenAI server, taking turns in one run.

Every target gets the same streaming /v1/chat/completions requests from 1 and 8 clients, greedy:
plain (up to 128 tokens; /v1 has no ignore_eos here) and with a schema whose reply is about 150 tokens of JSON (a 400-
character summary, a title, three tags: the mask is computed at every step of a long string). The
schema's replies end when their JSON does, so the figure is tokens/s over the tokens written.
Each client sends three requests in turn, at 1 client and at 8: with one request each, the run ended
with the longest of eight schema replies (104-120 tokens) decoding nearly alone, and that tail,
not the masks, was most of the gap (transformers, in-process: 0.80-0.84x with one request a
client, 0.92-0.94x with three; a step with masks costs ~3% more, 128 against 124.5 ms for 8 rows).

Targets (issue 18): a schema costs under 15% of tokens/s on each engine; the service on vLLM with a
schema at least 0.9x vLLM's own server with the same schema.

  .venv/bin/python benchmarks/bench_structured.py [--engines llama.cpp transformers vllm] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from bench_engines import vllm_own_server
from common import ROOT, Server, dump_json, print_table
from load import load

RESULTS = ROOT / "benchmarks" / "results"
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["title", "summary", "tags"],
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "summary": {"type": "string", "minLength": 400, "maxLength": 400},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 3, "maxItems": 3},
    },
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "summary", "schema": SCHEMA, "strict": True}}


def measure(targets: dict[str, str], clients: int, rounds: int) -> list[dict]:
    """Median tokens/s of each target, plain and with the schema, the targets taking turns."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(rounds):
        for name, url in targets.items():
            for mode, extra, max_tokens in (("plain", {}, 128), ("schema", {"response_format": FORMAT}, 256)):
                runs.setdefault((name, mode), []).append(load(
                    url, clients, 3, max_tokens, False, protocol="openai", extra=extra))
    rows = []
    for name in targets:
        plain, schema = runs[(name, "plain")], runs[(name, "schema")]
        plain_tps = statistics.median(r["tokens_per_s"] for r in plain) or float("nan")  # nan: every request failed
        schema_tps = statistics.median(r["tokens_per_s"] for r in schema)
        rows.append({"target": name, "clients": clients, "plain_tokens_per_s": plain_tps,
                     "schema_tokens_per_s": schema_tps, "schema_over_plain": schema_tps / plain_tps,
                     "schema_tokens_per_reply": statistics.median(r["output_tokens"] / max(r["requests"], 1)
                                                                  for r in schema),
                     "errors": sum(r["errors"] for r in plain + schema)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["llama.cpp", "transformers", "vllm"])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="leave out vLLM's own server")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()

    from pure_model_api.engine.loading import DEMO_MODEL, model_source

    servers, targets = [], {}
    try:
        if not args.no_peer:
            own = vllm_own_server(model_source(DEMO_MODEL, None), kv_cache_gb=2)
            servers.append(own)
            targets["vllm-own-server"] = own.url
        for engine in args.engines:
            RESULTS.mkdir(exist_ok=True)
            server = Server("--engine", engine, log=RESULTS / f"server-{engine}.log")
            servers.append(server)
            targets[f"service-{engine}"] = server.url
        rows = [row for clients in args.clients for row in measure(targets, clients, args.rounds)]
    finally:
        for server in servers:
            server.stop()
    for row in rows:
        peer = next((r for r in rows if r["target"] == "vllm-own-server" and r["clients"] == row["clients"]), None)
        row["schema_vs_vllm_own"] = row["schema_tokens_per_s"] / peer["schema_tokens_per_s"] if peer else None
    print_table(rows, ["target", "clients", "plain_tokens_per_s", "schema_tokens_per_s", "schema_over_plain",
                       "schema_vs_vllm_own", "schema_tokens_per_reply", "errors"])
    dump_json({"machine": os.uname().nodename, "cpus": os.cpu_count(), "schema": SCHEMA, "results": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
