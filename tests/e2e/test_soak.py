"""A bounded soak: 32 concurrent clients over 64 conversations on the default engine, through /chat
and /v1/responses, streaming and not, some hanging up mid-reply. Afterwards every conversation
holds exactly the rounds whose replies were delivered, in order; no request failed except those
the test cancelled; and the process's memory is back near its level after warm-up.
PURE_API_SOAK_SECONDS sets the length (default 90); the figures are printed (pytest -s)."""

import asyncio
import json
import os
import random
import time

import httpx
from helpers import ServerProcess

from pure_model_api.client.sse import asse_events

CLIENTS, CONVERSATIONS = 32, 64
SOAK_SECONDS = float(os.environ.get("PURE_API_SOAK_SECONDS", "90"))
FINAL_EVENTS = ("done", "response.completed", "response.incomplete")  # incomplete: max_output_tokens reached
MEMORY_SLACK_MB = 150  # allocator noise, the store's page cache; a leak grows without bound


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def kept_rounds(delivered: int) -> int:
    """The 20-round window: past 20, the oldest 10 go at once."""
    kept = 0
    for _ in range(delivered):
        kept = kept + 1 if kept < 20 else 11
    return kept


class Soak:
    def __init__(self, url: str, conversation_ids: list[str]):
        self.url = url
        self.ids = conversation_ids
        self.delivered: dict[str, list[str]] = {cid: [] for cid in conversation_ids}
        self.counts = {"requests": 0, "streamed": 0, "cancelled": 0, "failed": 0, "tokens": 0}
        self.failures: list[str] = []

    async def client(self, number: int, until: float) -> None:
        rng = random.Random(number)
        async with httpx.AsyncClient(base_url=self.url, timeout=300) as http:
            while time.monotonic() < until:
                cid = await self.free.get()  # one client at a time per conversation: its order is known
                try:
                    await self.turn(http, rng, cid)
                finally:
                    self.free.put_nowait(cid)

    async def turn(self, http, rng, cid: str) -> None:
        message = f"{cid} message {len(self.delivered[cid])}: tell me about {rng.choice(['rivers', 'owls', 'tea'])}."
        responses_api = cid.startswith("conv_")
        # hang up only where the reply is surely long (ignore_eos, /chat): a reply that ends before
        # the server sees the disconnect is complete, and stored
        stream, hang_up = rng.random() < 0.5, rng.random() < 0.1 and not responses_api
        body = ({"model": "demo", "input": message, "conversation": cid, "max_output_tokens": 200 if hang_up else 12}
                if responses_api else {"message": message, "session_id": cid, "max_tokens": 200 if hang_up else 12})
        if hang_up:
            body["ignore_eos"] = True
        path = "/v1/responses" if responses_api else "/chat"
        self.counts["requests"] += 1
        if stream or hang_up:
            self.counts["streamed"] += 1
            async with http.stream("POST", path, json={**body, "stream": True}) as response:
                events = []
                if response.status_code == 200:
                    async for name, data in asse_events(response):
                        if hang_up and name == "delta":
                            self.counts["cancelled"] += 1
                            return  # leaving the block closes the connection mid-reply
                        events.append((name, data))
            ok = response.status_code == 200 and events and events[-1][0] in FINAL_EVENTS
            final = events[-1][1] if ok else None
        else:
            response = await http.post(path, json=body)
            ok, final = response.status_code == 200, response.json() if response.status_code == 200 else None
        if not ok:
            self.counts["failed"] += 1
            self.failures.append(f"{path} {response.status_code}")
            return
        envelope = final["response"] if responses_api and stream else final  # response.completed wraps it
        usage = envelope.get("usage") or {}
        self.counts["tokens"] += usage.get("completion_tokens", usage.get("output_tokens", 0))
        self.delivered[cid].append(message)


    async def run(self, seconds: float) -> float:
        self.free = asyncio.Queue()
        for cid in self.ids:
            self.free.put_nowait(cid)
        started = time.monotonic()
        await asyncio.gather(*[self.client(n, started + seconds) for n in range(CLIENTS)])
        return time.monotonic() - started


def test_soak_32_clients_64_conversations(tmp_path):
    # the KV RAM tier fills up to its bound by design (2 GiB by default): kept well under the slack,
    # so that growth past it is a leak
    with ServerProcess("--kv-ram-gb", "0.05", db=tmp_path / "soak.sqlite3", engine="auto") as server:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            conversations = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(CONVERSATIONS // 4)]
            engine = http.get("/status").json()["engine"]
        ids = [f"soak-{n}" for n in range(CONVERSATIONS - len(conversations))] + conversations

        warm = Soak(server.url, [f"warm-{n}" for n in range(CONVERSATIONS)])
        asyncio.run(warm.run(10))
        rss_warm = rss_mb(server.process.pid)
        soak = Soak(server.url, ids)
        elapsed = asyncio.run(soak.run(SOAK_SECONDS))
        rss_after = rss_mb(server.process.pid)
        assert soak.failures == [] and warm.failures == []

        with httpx.Client(base_url=server.url, timeout=120) as http:
            for cid in ids:
                items = http.get(f"/v1/conversations/{cid}/items", params={"order": "asc", "limit": 100}).json()
                users = [i["content"][0]["text"] for i in items["data"] if i["role"] == "user"]
                roles = [i["role"] for i in items["data"]]
                sent = soak.delivered[cid]
                assert roles == ["user", "assistant"] * (len(roles) // 2), cid
                assert users == sent[len(sent) - kept_rounds(len(sent)):], cid
            status = http.get("/status").json()

    figures = {"engine": engine, "seconds": round(elapsed, 1), **soak.counts,
               "requests_per_s": round(soak.counts["requests"] / elapsed, 2),
               "tokens_per_s": round(soak.counts["tokens"] / elapsed, 1),
               "rss_mb_after_warmup": round(rss_warm), "rss_mb_after_soak": round(rss_after),
               "running_after": status["running_requests"], "queued_after": status["queued_requests"]}
    print("\nsoak:", json.dumps(figures))
    assert soak.failures == []
    assert soak.counts["cancelled"] > 0 and soak.counts["streamed"] > 0
    assert status["running_requests"] == 0 and status["queued_requests"] == 0
    assert rss_after <= rss_warm + MEMORY_SLACK_MB, figures
