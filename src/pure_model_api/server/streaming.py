"""Server-sent events, and cancelling work whose client has gone."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging

from fastapi import Request
from starlette.responses import StreamingResponse

from pure_model_api.errors import ApiError

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
log = logging.getLogger(__name__)


def sse_event(data: dict | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


class EventStream(StreamingResponse):
    """A stream of server-sent events whose work is closed when the response ends, however it
    ends. Starlette cancels the body's generator when the client disconnects, but a client gone
    before the first chunk can leave that generator never started, and closing a generator that
    never started runs none of its cleanup: `on_close` is what holds the engine request (or the
    turn) and is closed here in any case."""

    def __init__(self, events, headers: dict | None = None, on_close=None):
        super().__init__(events, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            if self.on_close is not None:
                closed = self.on_close()
                if inspect.isawaitable(closed):
                    await closed


def event_stream(events, headers: dict | None = None, on_close=None) -> EventStream:
    """Starlette cancels `events` when the client disconnects; the generators below it then
    cancel the engine request and store nothing. `on_close` (the engine handle's cancel, or a
    started stream's aclose) runs once the response is over, whatever happened."""
    return EventStream(events, headers, on_close)


async def ending_in_error_event(events, error_event, surface: str, last: str | None = None):
    """`events` (server-sent events, as text), and, where they fail after the stream began (a
    200 has gone out), one last event saying why in the surface's own shape: `error_event(error)`.
    An unexpected fault is logged; the client reads only that the server failed. `last` ends the
    stream either way (/v1's `[DONE]`)."""
    async with contextlib.aclosing(events) as stream:
        try:
            async for event in stream:
                yield event
        except ApiError as error:
            yield error_event(error)
        except Exception:  # noqa: BLE001 - logged, and the client gets a clean error event
            log.exception("%s stream failed", surface)
            yield error_event(ApiError("internal server error; see the server log"))
    if last is not None:
        yield last


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


class StartedStream:
    """`stream` with its first item already taken, as an async iterator. Its `aclose` closes
    `stream` even when nobody ever iterated this one."""

    def __init__(self, stream, first):
        self._stream = stream
        self._first = [first] if first is not None else []

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._first:
            return self._first.pop()
        return await anext(self._stream)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def started(stream) -> StartedStream:
    """Run `stream` to its first item now, so that what fails before any output (a bad prompt,
    a full queue) is an ordinary HTTP error rather than an event inside a 200 stream."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await stream.aclose()
        raise
    return StartedStream(stream, first)
