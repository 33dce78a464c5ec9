#!/usr/bin/env python3
"""Saved conversation KV states on the llama.cpp engine (issue 19), on the demo model, the KV tiers
on (the default) against off (`--kv-ram-gb 0 --kv-disk-gb 0`: the engine as it was, every idle
conversation's cache kept in the one llama.cpp context), one server at a time.

1. Idle pile-up: one client's prefill and decode speed (a ~700-token prompt, 128 tokens decoded)
   on a fresh server, then again with --idle (40) other conversations of ~900 tokens finished and
   idle. Target: with 40, at least 0.9x the fresh server's, both speeds.
2. Window drop: a --turns (30) turn conversation through /chat, 120-token replies, --pause (3) s
   between turns as a person takes: time to first token per turn. At the 21st round the window
   drops 10 rounds and the next prompt begins anew; the engine prefills that beginning in the
   background during the pause. Target: no turn over 2x the median turn.
3. Restart: a conversation of --rounds (19) rounds through /chat, then its next turn's time to
   first token; the same for a second conversation after a SIGTERM restart. Target: after the
   restart at most 2x the turn without one.

  .venv/bin/python benchmarks/bench_kv_tiers.py [--only idle window restart] [--idle 40] [--turns 30]
                                                [--pause 3] [--rounds 19] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import ROOT, Server, dump_json, print_table

RESULTS = ROOT / "benchmarks" / "results"
OFF = ("--kv-ram-gb", "0", "--kv-disk-gb", "0")
TOPICS = ["gardens", "rivers", "trains", "bread", "music", "chess", "bridges", "winter", "bees", "maps"]


def paragraph(seed: int, words: int) -> str:
    """Distinct filler text (no two prompts share more than the template's opening)."""
    vocabulary = ["quiet", "harbor", "lantern", "meadow", "copper", "orbit", "willow", "ember", "canyon", "velvet",
                  "signal", "marble", "thistle", "summit", "pepper", "tundra", "violet", "anchor", "prairie", "falcon"]
    return " ".join(vocabulary[(seed * 7 + i * i + i * seed) % len(vocabulary)] for i in range(words))


def streamed_chat(client: httpx.Client, url: str, body: dict) -> tuple[float, float, dict]:
    """One streamed /chat turn: (seconds to the first piece, to the last, usage)."""
    from pure_model_api.client.sse import sse_events

    started, first, last, usage = time.perf_counter(), None, None, None
    with client.stream("POST", f"{url}/chat", json={**body, "stream": True}) as response:
        for event, data in sse_events(response):
            if event == "delta":
                last = time.perf_counter()
                first = first or last
            elif event == "done":
                usage = data["usage"]
    return first - started, last - started, usage


def probe(client: httpx.Client, url: str, seed: int) -> dict:
    """Prefill tokens/s (prompt / time to first token) and decode tokens/s of one new conversation."""
    first, last, usage = streamed_chat(client, url, {
        "session_id": f"probe-{seed}", "max_tokens": 128, "temperature": 0, "ignore_eos": True,
        "message": f"Notes {seed}: {paragraph(seed, 480)}\nWrite a long story about these notes."})
    return {"prefill_tok_s": usage["prompt_tokens"] / first,
            "decode_tok_s": (usage["completion_tokens"] - 1) / (last - first)}


def idle_conversation(url: str, seed: int) -> None:
    body = {"session_id": f"idle-{seed}", "max_tokens": 100, "temperature": 0, "ignore_eos": True,
            "message": f"Diary {seed}: {paragraph(seed + 1000, 600)}\nSum it up."}
    httpx.post(f"{url}/chat", json=body, timeout=600).raise_for_status()


def pile_up(tiers: str, idle: int) -> dict:
    server = Server("--engine", "llama.cpp", *(OFF if tiers == "off" else ()), log=RESULTS / f"kv-{tiers}.log")
    try:
        with httpx.Client(timeout=600) as client:
            probe(client, server.url, 0)  # warm up
            fresh = [probe(client, server.url, seed) for seed in (1, 2, 3)]
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda seed: idle_conversation(server.url, seed), range(idle)))
            crowded = [probe(client, server.url, seed) for seed in (4, 5, 6)]
            status = client.get(f"{server.url}/status").json()
    finally:
        server.stop()
    row = {"tiers": tiers, "idle": idle, "cached_conversations": status.get("cached_conversations")}
    for key in ("prefill_tok_s", "decode_tok_s"):
        row[f"{key}_fresh"] = statistics.median(p[key] for p in fresh)
        row[f"{key}_idle"] = statistics.median(p[key] for p in crowded)
        row[f"{key}_ratio"] = row[f"{key}_idle"] / row[f"{key}_fresh"]
    return row


def chat(client: httpx.Client, url: str, session: str, message: str) -> float:
    """Seconds to the first streamed piece of a /chat turn."""
    first, _, _ = streamed_chat(client, url, {"session_id": session, "message": message, "max_tokens": 60,
                                              "temperature": 0})
    return first


def window(turns: int, pause: float) -> list[dict]:
    server = Server("--engine", "llama.cpp", log=RESULTS / "kv-window.log")
    rows = []
    try:
        with httpx.Client(timeout=600) as client:
            for n in range(turns):
                first, _, usage = streamed_chat(client, server.url, {
                    "session_id": "window", "max_tokens": 120, "temperature": 0, "ignore_eos": True,
                    "message": f"Turn {n} about {TOPICS[n % len(TOPICS)]}: {paragraph(n, 30)}. Tell me more."})
                rows.append({"turn": n + 1, "ttft_s": first, "prompt_tokens": usage["prompt_tokens"],
                             "cached_tokens": usage["cached_tokens"]})
                time.sleep(pause)
    finally:
        server.stop()
    median = statistics.median(row["ttft_s"] for row in rows)
    for row in rows:
        row["over_median"] = row["ttft_s"] / median
    return rows


def restart(tiers: str, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        args = ("--engine", "llama.cpp", "--db", str(Path(directory) / "c.sqlite3"), *(OFF if tiers == "off" else ()))
        server = Server(*args, log=RESULTS / f"kv-restart-{tiers}.log")
        with httpx.Client(timeout=600) as client:
            for session in ("kept", "restarted"):
                for n in range(rounds):
                    chat(client, server.url, session, f"Round {n} about {TOPICS[n % len(TOPICS)]}: "
                                                      f"{paragraph(n + len(session), 40)}. What do you think?")
            without = chat(client, server.url, "kept", "Sum up everything we said.")
            server.stop()
            server = Server(*args, log=RESULTS / f"kv-restart-{tiers}.log")
            after = chat(client, server.url, "restarted", "Sum up everything we said.")
            status = client.get(f"{server.url}/status").json()
        server.stop()
    return {"tiers": tiers, "rounds": rounds, "ttft_without_restart_s": without, "ttft_after_restart_s": after,
            "after_over_without": after / without, "disk_restores": (status.get("kv_tiers") or {}).get(
                "disk", {}).get("restores", 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=19)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--pause", type=float, default=3.0)
    parser.add_argument("--only", nargs="+", default=["idle", "window", "restart"])
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    piles = [pile_up(tiers, args.idle) for tiers in ("on", "off")] if "idle" in args.only else []
    turns = window(args.turns, args.pause) if "window" in args.only else []
    restarts = [restart(tiers, args.rounds) for tiers in ("on", "off")] if "restart" in args.only else []
    if piles:
        print_table(piles, ["tiers", "idle", "cached_conversations", "prefill_tok_s_fresh", "prefill_tok_s_idle",
                            "prefill_tok_s_ratio", "decode_tok_s_fresh", "decode_tok_s_idle", "decode_tok_s_ratio"])
        print()
    if turns:
        print_table(turns, ["turn", "ttft_s", "over_median", "prompt_tokens", "cached_tokens"])
        print()
    if restarts:
        print_table(restarts, ["tiers", "rounds", "ttft_without_restart_s", "ttft_after_restart_s",
                               "after_over_without", "disk_restores"])
    dump_json({"machine": os.uname().nodename, "cpus": os.cpu_count(), "idle_pile_up": piles, "window": turns,
               "restart": restarts}, args.json)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
