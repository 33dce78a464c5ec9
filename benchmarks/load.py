"""A load generator of the project's own: N concurrent clients, each sending streaming chat
requests on sessions of its own, fixed prompts, fixed reply length, temperature 0.

`protocol="chat"` speaks the service's /chat (SSE); `protocol="openai"` speaks
/v1/chat/completions, so the same load runs against vLLM's own OpenAI server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
from common import PROMPTS, percentile

from pure_model_api.client.sse import asse_events


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


async def stream_chat(client: httpx.AsyncClient, body: dict) -> tuple[float | None, int, str]:
    """One streamed /chat request: (time of the first delta, completion tokens, reply)."""
    first, tokens, parts = None, 0, []
    async with client.stream("POST", "/chat", json={**body, "stream": True}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        async for event, data in asse_events(response):
            if event == "delta":
                first = first or time.perf_counter()
                parts.append(data["delta"])
            elif event == "done":
                tokens = data["usage"]["completion_tokens"]
            elif event == "error":
                raise RuntimeError(data["error"])
    return first, tokens, "".join(parts)


async def stream_openai(client: httpx.AsyncClient, body: dict) -> tuple[float | None, int, str]:
    """One streamed /v1/chat/completions request, as vLLM's own server takes it."""
    first, tokens, parts, chunks = None, 0, [], 0
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            data = json.loads(line[5:])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            for choice in data.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    parts.append(text)
                    chunks += 1
    # llama-cpp-python's server sends no usage when streaming; it streams one token a chunk
    return first, tokens or chunks, "".join(parts)


async def one_request(client: httpx.AsyncClient, session: str, prompt: str, max_tokens: int,
                      ignore_eos: bool, result: LoadResult, protocol: str = "chat", extra: dict | None = None) -> None:
    started = time.perf_counter()
    try:
        if protocol == "chat":
            first, tokens, _ = await stream_chat(client, {
                "message": prompt, "session_id": session, "temperature": 0, "max_tokens": max_tokens,
                "ignore_eos": ignore_eos, **(extra or {})})
        else:
            fixed = {"ignore_eos": True, "min_tokens": max_tokens} if ignore_eos else {}  # vLLM; llama-cpp-python
            first, tokens, _ = await stream_openai(client, {
                "model": "demo", "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                "max_tokens": max_tokens, **fixed, **(extra or {})})
    except (httpx.HTTPError, RuntimeError):
        result.errors += 1
        return
    finished = time.perf_counter()
    result.requests += 1
    result.output_tokens += tokens
    result.ttft_s.append((first or finished) - started)
    if tokens > 1 and first is not None:
        result.tpot_s.append((finished - first) / (tokens - 1))


async def run_load(url: str, concurrency: int, requests_per_client: int, max_tokens: int,
                   ignore_eos: bool = True, protocol: str = "chat", extra: dict | None = None) -> LoadResult:
    """`extra`: more fields for every request's body (a response_format, say)."""
    result = LoadResult(concurrency)
    run_id = uuid.uuid4().hex[:8]  # fresh sessions every run: no history grows between runs
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def client_loop(index: int) -> None:
            for turn in range(requests_per_client):
                prompt = PROMPTS[(index + turn) % len(PROMPTS)]
                await one_request(client, f"load-{run_id}-{index}-{turn}", prompt, max_tokens, ignore_eos,
                                  result, protocol, extra)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def load(url: str, concurrency: int, requests_per_client: int, max_tokens: int, ignore_eos: bool = True,
         protocol: str = "chat", extra: dict | None = None) -> dict:
    return asyncio.run(run_load(url, concurrency, requests_per_client, max_tokens, ignore_eos, protocol,
                                extra)).summary()
