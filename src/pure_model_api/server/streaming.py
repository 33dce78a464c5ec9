"""Server-sent events, and cancelling work whose client has gone."""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import Request
from starlette.responses import StreamingResponse

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(data: dict | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def event_stream(events, headers: dict | None = None) -> StreamingResponse:
    """Starlette cancels `events` when the client disconnects; the generators below it then
    cancel the engine request and store nothing."""
    return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})


class ClientDisconnected(Exception):
    pass


async def cancel_on_disconnect(request: Request, work, poll_s: float = 0.2):
    """Await `work`, cancelling it if the client disconnects first (non-streaming requests)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientDisconnected()
    finally:
        if not task.done():
            task.cancel()


async def primed(stream):
    """Run `stream` to its first item now, so that what fails before any output (a bad prompt,
    a full queue) is an ordinary HTTP error rather than an event inside a 200 stream."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise

    async def rest():
        async with contextlib.aclosing(stream):
            if first is not None:
                yield first
                async for item in stream:
                    yield item

    return rest()
