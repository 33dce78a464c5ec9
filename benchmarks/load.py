"""A load generator of the project's own: N concurrent clients, each sending streaming chat
requests on sessions of its own, fixed prompts, fixed reply length, temperature 0."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
from common import PROMPTS, percentile


@dataclass
class LoadResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    output_tokens: int = 0
    wall_s: float = 0.0
    ttft_s: list[float] = field(default_factory=list)
    tpot_s: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency, "requests": self.requests, "errors": self.errors,
            "output_tokens": self.output_tokens, "wall_s": round(self.wall_s, 2),
            "tokens_per_s": self.output_tokens / self.wall_s if self.wall_s else 0.0,
            "ttft_p50_s": percentile(self.ttft_s, 50), "ttft_p99_s": percentile(self.ttft_s, 99),
            "tpot_p50_s": percentile(self.tpot_s, 50), "tpot_p99_s": percentile(self.tpot_s, 99),
        }


async def one_request(client: httpx.AsyncClient, session: str, prompt: str, max_tokens: int,
                      ignore_eos: bool, result: LoadResult) -> None:
    body = {"message": prompt, "session_id": session, "temperature": 0, "max_tokens": max_tokens,
            "stream": True, "ignore_eos": ignore_eos}
    started = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", "/chat", json=body) as response:
            if response.status_code != 200:
                result.errors += 1
                return
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    if event == "delta" and first is None:
                        first = time.perf_counter()
                    elif event == "done":
                        tokens = json.loads(line[5:])["usage"]["completion_tokens"]
                    elif event == "error":
                        result.errors += 1
                        return
    except httpx.HTTPError:
        result.errors += 1
        return
    finished = time.perf_counter()
    result.requests += 1
    result.output_tokens += tokens
    result.ttft_s.append((first or finished) - started)
    if tokens > 1 and first is not None:
        result.tpot_s.append((finished - first) / (tokens - 1))


async def run_load(url: str, concurrency: int, requests_per_client: int, max_tokens: int,
                   ignore_eos: bool = True) -> LoadResult:
    result = LoadResult(concurrency)
    run_id = uuid.uuid4().hex[:8]  # fresh sessions every run: no history grows between runs
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def client_loop(index: int) -> None:
            for turn in range(requests_per_client):
                prompt = PROMPTS[(index + turn) % len(PROMPTS)]
                await one_request(client, f"load-{run_id}-{index}-{turn}", prompt, max_tokens, ignore_eos,
                                  result)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def load(url: str, concurrency: int, requests_per_client: int, max_tokens: int, ignore_eos: bool = True) -> dict:
    return asyncio.run(run_load(url, concurrency, requests_per_client, max_tokens, ignore_eos)).summary()
