"""The ASGI middleware every request passes first: a request id, the access log line, the body
size limit, refusal while shutting down, and API keys. Pure ASGI, so streaming is untouched."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid

from pure_model_api.errors import (
    ApiError,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    ShuttingDown,
    Unauthorized,
)
from pure_model_api.server.errors import error_body

access_log = logging.getLogger("pure_model_api.access")

OPEN_PATHS = {"/health", "/"}  # and the page's static files under /ui/: the page holds no secret
MAX_HEADER_BYTES = 16384  # all request headers together; the HTTP parser in use (httptools) sets no limit


def owner_of(api_key: str | None, secret: bytes) -> str:
    """Conversations belong to the key that made them; without keys, to everyone (""). The owner
    id is a keyed hash (HMAC-SHA256) of the key with the database's own secret, so the ids in a
    database say nothing about the keys to anyone without that secret, and differ per database."""
    return hmac.new(secret, api_key.encode(), hashlib.sha256).hexdigest()[:32] if api_key else ""


def legacy_owner_of(api_key: str) -> str:
    """The owner id of schema versions before the keyed hash: an unsalted SHA-256 prefix."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RequestChecks:
    def __init__(self, app, state, api_keys: list[str], max_body_bytes: int, body_timeout: float = 30.0):
        self.app = app
        self.state = state  # the FastAPI app.state: `draining` is set there on shutdown
        self.api_keys = [k.encode() for k in api_keys]
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        status = {"code": 0}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            refusal = self._check(scope)
            if refusal is not None:
                return await _send_error(scope, send_with_id, refusal)
            try:  # a client that trickles its body (slowloris) is cut off, not waited on
                replay = await asyncio.wait_for(self._read_body(receive), self.body_timeout)
            except TimeoutError:
                late = RequestTimeout(f"the request body did not arrive within {self.body_timeout:g} s")
                return await _send_error(scope, send_with_id, late)
            if replay is None:
                too_large = PayloadTooLarge(f"request body is over the limit of {self.max_body_bytes} bytes")
                return await _send_error(scope, send_with_id, too_large)
            await self.app(scope, replay, send_with_id)
        finally:
            access_log.info('%s %s %s %d %.1fms rid=%s', scope.get("client", ("-",))[0], scope["method"],
                            scope["path"], status["code"], (time.perf_counter() - started) * 1000, request_id)

    def _check(self, scope) -> ApiError | None:
        header_bytes = sum(len(k) + len(v) for k, v in scope.get("headers", []))
        if header_bytes > MAX_HEADER_BYTES:
            return HeadersTooLarge(f"request headers are {header_bytes} bytes; the limit is {MAX_HEADER_BYTES}")
        if getattr(self.state, "draining", False):
            return ShuttingDown()
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            return PayloadTooLarge(f"request body is {length} bytes; the limit is {self.max_body_bytes}")
        scope.setdefault("state", {})["owner"] = ""
        path = scope["path"]
        if self.api_keys and path not in OPEN_PATHS and not path.startswith("/ui/") and scope["method"] != "OPTIONS":
            key = self._bearer(scope)
            if key is None:
                return Unauthorized()
            scope["state"]["owner"] = owner_of(key, self.state.owner_secret)
        return None

    def _bearer(self, scope) -> str | None:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        matches = [hmac.compare_digest(token.strip().encode(), key) for key in self.api_keys]
        return token.strip() if any(matches) else None

    async def _read_body(self, receive):
        """Read the whole body (it is small), refusing it past the limit; then replay it to the app,
        whose later receive() calls go straight through (that is how a disconnect is seen)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return pending.pop() if pending else await receive()

        return replay


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_error(scope, send, error: ApiError) -> None:
    body = json.dumps(error_body(scope["path"], error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
