"""The documented API: POST /chat (JSON or SSE) and POST /reset."""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pure_model_api.engine.params import TextDelta
from pure_model_api.errors import ApiError
from pure_model_api.protocol.chat import ChatRequest, ChatResponse, ResetRequest, ResetResponse, Usage
from pure_model_api.server import affinity
from pure_model_api.server.errors import parse_json_body
from pure_model_api.server.openapi import body, responses
from pure_model_api.server.streaming import cancel_on_disconnect, event_stream, primed, sse_event
from pure_model_api.service import ChatResult

router = APIRouter()
log = logging.getLogger(__name__)


def chat_response(result: ChatResult) -> ChatResponse:
    finish = result.finish
    return ChatResponse(message=result.message, response=result.response, session_id=result.session_id,
                        finish_reason=finish.finish_reason,
                        usage=Usage(prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens,
                                    cached_tokens=finish.cached_tokens))


@router.post("/chat", response_model=None, openapi_extra=body(ChatRequest),
             responses=responses(ChatResponse, openai=False, stream=True, generation=True))
async def chat(request: Request):
    header = affinity.named(request)  # the session, where the body does not name one; validated as one
    body = await parse_json_body(request, ChatRequest, defaults={"session_id": header} if header else None)
    affinity.check_agrees(request, body.session_id, "session_id")
    service = request.app.state.service
    owner = request.state.owner
    params = body.to_sampling_params()
    echo = {affinity.HEADER: body.session_id}
    if body.stream:
        stream = await primed(service.chat_stream(owner, body.session_id, body.message, params))
        return event_stream(_chat_events(stream), headers=echo, on_close=stream.aclose)
    result = await cancel_on_disconnect(request, service.chat(owner, body.session_id, body.message, params))
    return JSONResponse(chat_response(result).model_dump(), headers=echo)


async def _chat_events(stream):
    """`delta` events as the reply is written, then `done` with the whole response; a failure
    after the stream began is an `error` event, and the round is not stored."""
    async with contextlib.aclosing(stream) as items:
        try:
            async for item in items:
                if isinstance(item, TextDelta):
                    yield sse_event({"delta": item.text}, event="delta")
                else:
                    yield sse_event({**chat_response(item).model_dump(), "done": True}, event="done")
        except ApiError as error:
            yield sse_event({"error": error.message}, event="error")
        except Exception:  # noqa: BLE001 - logged, and the client gets a clean error event
            log.exception("chat stream failed")
            yield sse_event({"error": "internal server error; see the server log"}, event="error")


@router.post("/reset", openapi_extra=body(ResetRequest, required=False),
             responses=responses(ResetResponse, openai=False))
async def reset(request: Request):
    """Clear the default conversation, or the one named by session_id (JSON body, query, or the
    X-Conversation-ID header)."""
    header = affinity.named(request)  # as on /chat: the header names the session where nothing else does
    defaults = {"session_id": header} if header else {}
    reset_request = await parse_json_body(request, ResetRequest, body_optional=True,
                                           defaults={**defaults, **request.query_params})
    affinity.check_agrees(request, reset_request.session_id, "session_id")
    removed = await request.app.state.service.reset(request.state.owner, reset_request.session_id)
    return {"status": "success", "message": "conversation reset", "session_id": reset_request.session_id,
            "rounds_removed": removed}
