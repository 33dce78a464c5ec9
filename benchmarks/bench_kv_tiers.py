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

The peer, on the same scripts (window and restart): llama-cpp-python's own server (`python -m
llama_cpp.server`, --n_ctx 4096), the client keeping the history with the service's window rule.
It has one cache: a conversation's turn finds its prefix there only if no other came between.

  .venv/bin/python benchmarks/bench_kv_tiers.py [--only idle window restart] [--idle 40] [--turns 30]
                                                [--pause 3] [--rounds 19] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from bench_llamacpp import llama_cpp_python_server
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


def peer_turn(client: httpx.Client, url: str, history: list[dict], message: str, max_tokens: int,
              fixed: bool = False) -> float:
    """One streamed turn on an OpenAI server, the client holding the history (the service's window:
    at 21 rounds the oldest 10 go): seconds to the first piece. `fixed`: exactly max_tokens."""
    messages = history + [{"role": "user", "content": message}]
    body = {"model": "demo", "messages": messages, "temperature": 0, "max_tokens": max_tokens, "stream": True,
            **({"min_tokens": max_tokens} if fixed else {})}
    started, first, reply = time.perf_counter(), None, []
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                piece = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if piece:
                    first = first or time.perf_counter()
                    reply.append(piece)
    history[:] = messages + [{"role": "assistant", "content": "".join(reply)}]
    if len(history) > 2 * 20:
        del history[:2 * 10]
    return first - started


def window_message(n: int) -> str:
    return f"Turn {n} about {TOPICS[n % len(TOPICS)]}: {paragraph(n, 30)}. Tell me more."


def round_message(n: int, session: str) -> str:
    return f"Round {n} about {TOPICS[n % len(TOPICS)]}: {paragraph(n + len(session), 40)}. What do you think?"


def window(turns: int, pause: float) -> list[dict]:
    server = Server("--engine", "llama.cpp", log=RESULTS / "kv-window.log")
    rows = []
    try:
        with httpx.Client(timeout=600) as client:
            for n in range(turns):
                first, _, usage = streamed_chat(client, server.url, {
                    "session_id": "window", "max_tokens": 120, "temperature": 0, "ignore_eos": True,
                    "message": window_message(n)})
                rows.append({"turn": n + 1, "ttft_s": first, "prompt_tokens": usage["prompt_tokens"],
                             "cached_tokens": usage["cached_tokens"]})
                time.sleep(pause)
    finally:
        server.stop()
    peer, history = llama_cpp_python_server(str(gguf())), []
    try:
        with httpx.Client(timeout=600) as client:
            for n, row in enumerate(rows):
                row["peer_ttft_s"] = peer_turn(client, peer.url, history, window_message(n), 120, fixed=True)
                time.sleep(pause)
    finally:
        peer.stop()
    for key in ("ttft_s", "peer_ttft_s"):
        median = statistics.median(row[key] for row in rows)
        for row in rows:
            row[key.replace("ttft_s", "over_median")] = row[key] / median
    return rows


def gguf() -> Path:
    from pure_model_api.engine.loading import find_demo_gguf

    return find_demo_gguf()


def restart_peer(rounds: int) -> dict:
    """The restart script on llama-cpp-python's server: its one cache holds the last conversation
    only, and nothing survives its restart."""
    histories = {"kept": [], "restarted": []}
    peer = llama_cpp_python_server(str(gguf()))
    with httpx.Client(timeout=600) as client:
        for session, history in histories.items():
            for n in range(rounds):
                peer_turn(client, peer.url, history, round_message(n, session), 60)
        without = peer_turn(client, peer.url, histories["kept"], "Sum up everything we said.", 60)
        peer.stop()
        peer = llama_cpp_python_server(str(gguf()))
        after = peer_turn(client, peer.url, histories["restarted"], "Sum up everything we said.", 60)
    peer.stop()
    return {"tiers": "llama-cpp-python", "rounds": rounds, "ttft_without_restart_s": without,
            "ttft_after_restart_s": after, "after_over_without": after / without, "disk_restores": None}


def restart(tiers: str, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        args = ("--engine", "llama.cpp", "--db", str(Path(directory) / "c.sqlite3"), *(OFF if tiers == "off" else ()))
        server = Server(*args, log=RESULTS / f"kv-restart-{tiers}.log")
        with httpx.Client(timeout=600) as client:
            for session in ("kept", "restarted"):
                for n in range(rounds):
                    chat(client, server.url, session, round_message(n, session))
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
    restarts = ([restart(tiers, args.rounds) for tiers in ("on", "off")] + [restart_peer(args.rounds)]
                if "restart" in args.only else [])
    if piles:
        print_table(piles, ["tiers", "idle", "cached_conversations", "prefill_tok_s_fresh", "prefill_tok_s_idle",
                            "prefill_tok_s_ratio", "decode_tok_s_fresh", "decode_tok_s_idle", "decode_tok_s_ratio"])
        print()
    if turns:
        print_table(turns, ["turn", "ttft_s", "over_median", "prompt_tokens", "cached_tokens", "peer_ttft_s",
                            "peer_over_median"])
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
