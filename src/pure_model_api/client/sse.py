"""Reading server-sent events, for the client, the tests and the benchmarks (the chat page reads
them in JavaScript): httpx-sse parses the stream; each event's data is one JSON object here, or
`[DONE]` at the end of a /v1 stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
from httpx_sse import EventSource, ServerSentEvent


def _decoded(event: ServerSentEvent) -> tuple[str, dict | str]:
    return event.event, event.data if event.data == "[DONE]" else json.loads(event.data)


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict | str]]:
    """(event name, data) for each event of a streaming response; the name is `message` where the
    server sent no `event:` line."""
    for event in EventSource(response).iter_sse():
        yield _decoded(event)


async def asse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict | str]]:
    async for event in EventSource(response).aiter_sse():
        yield _decoded(event)
