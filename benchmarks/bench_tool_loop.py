#!/usr/bin/env python3
"""An agent's tool loop on the stateful Responses API: 10 steps on one stored conversation, each a
forced function call whose result (about 150 tokens) goes back in the next step. The prompt grows by
every call and result; an engine that reuses the conversation's KV cache prefills only what a step
adds, so a late step starts about as fast as an early one.

Time to first token of a step: from sending it to the first piece of the call's arguments (a
streamed `response.function_call_arguments.delta`). The prompt and cached tokens of each step are
read off its `usage`.

Target (issue 18): step 10's time to first token at most 2x step 2's, on vLLM and llama.cpp. The
transformers engine keeps no cache between requests: it is shown for contrast.

  .venv/bin/python benchmarks/bench_tool_loop.py [--engines llama.cpp vllm transformers] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import httpx
from common import ROOT, Server, dump_json, print_table

RESULTS = ROOT / "benchmarks" / "results"
STEPS = 10
TOOLS = [{"type": "function", "name": "search_notes", "description": "Search the user's notes",
          "parameters": {"type": "object", "additionalProperties": False, "required": ["query"],
                         "properties": {"query": {"type": "string", "maxLength": 40}}}}]
RESULT = ("Note {step}: the team met on Tuesday to plan the spring release. They agreed to ship the new "
          "search page first, then the export feature, and to keep the old API for one more quarter. "
          "Ana will write the migration guide; Ben owns the load tests; the launch review is on the 14th. "
          "Open questions: pricing for large teams, and whether the mobile app waits for the export work.")


def step(client: httpx.Client, url: str, body: dict) -> tuple[float, dict]:
    """(seconds to the first argument piece, the finished response) of one streamed step."""
    started, first, response = time.perf_counter(), None, None
    with client.stream("POST", f"{url}/v1/responses", json={**body, "stream": True}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "response.function_call_arguments.delta" and first is None:
                first = time.perf_counter() - started
            elif event["type"] in ("response.completed", "response.incomplete", "response.failed"):
                response = event["response"]
    return first if first is not None else float("nan"), response


def loop(url: str) -> list[dict]:
    rows = []
    with httpx.Client(timeout=600) as client:
        conversation = client.post(f"{url}/v1/conversations", json={}).json()["id"]
        common = {"model": "demo", "conversation": conversation, "tools": TOOLS, "tool_choice": "required",
                  "temperature": 0, "max_output_tokens": 40}
        inputs: list | str = "Find what my notes say about the spring release, one search at a time."
        for number in range(1, STEPS + 1):
            ttft, response = step(client, url, {**common, "input": inputs})
            call = next(item for item in response["output"] if item["type"] == "function_call")
            usage = response["usage"]
            rows.append({"step": number, "ttft_s": ttft, "input_tokens": usage["input_tokens"],
                         "cached_tokens": usage["input_tokens_details"]["cached_tokens"]})
            inputs = [{"type": "function_call_output", "call_id": call["call_id"],
                       "output": RESULT.format(step=number)}]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["llama.cpp", "vllm", "transformers"])
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    summary, steps = [], []
    for engine in args.engines:  # one server at a time: a latency, not disturbed by another engine core
        server = Server("--engine", engine, log=RESULTS / f"server-{engine}.log")
        try:
            loop(server.url)  # warm up: compiled graphs, the grammar library's vocabulary
            rows = loop(server.url)
        finally:
            server.stop()
        steps += [{"engine": engine, **row} for row in rows]
        by_step = {row["step"]: row for row in rows}
        summary.append({"engine": engine, "ttft_step2_s": by_step[2]["ttft_s"],
                        "ttft_step10_s": by_step[STEPS]["ttft_s"],
                        "step10_over_step2": by_step[STEPS]["ttft_s"] / by_step[2]["ttft_s"],
                        "input_tokens_step10": by_step[STEPS]["input_tokens"],
                        "cached_tokens_step10": by_step[STEPS]["cached_tokens"]})
    print_table(steps, ["engine", "step", "ttft_s", "input_tokens", "cached_tokens"])
    print()
    print_table(summary, ["engine", "ttft_step2_s", "ttft_step10_s", "step10_over_step2", "input_tokens_step10",
                          "cached_tokens_step10"])
    dump_json({"machine": os.uname().nodename, "cpus": os.cpu_count(), "steps": steps, "summary": summary}, args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
