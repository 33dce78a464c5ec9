"""The documented API: POST /chat (JSON or SSE) and POST /reset."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pure_model_api.engine.params import TextDelta
from pure_model_api.protocol.chat import ChatRequest, ChatResponse, ResetRequest, ResetResponse, Usage
from pure_model_api.server import affinity
from pure_model_api.server.errors import parse_json_body
from pure_model_api.server.openapi import body, responses
from pure_model_api.server.streaming import (
    cancel_on_disconnect,
    ending_in_error_event,
    event_stream,
    sse_event,
    started,
)
from pure_model_api.service import TurnResult, last_of

router = APIRouter()


def chat_response(message: str, session_id: str, result: TurnResult) -> ChatResponse:
    finish = result.finish
    return ChatResponse(message=message, response=finish.text, session_id=session_id,
                        finish_reason=finish.finish_reason,
                        usage=Usage(prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens,
                                    cached_tokens=finish.cached_tokens))


@router.post("/chat", response_model=None, openapi_extra=body(ChatRequest),
             responses=responses(ChatResponse, openai=False, stream=True, generation=True))
async def chat(request: Request):
    header = affinity.from_header(request)  # the session, where the body does not name one; validated as one
    body = await parse_json_body(request, ChatRequest, defaults={"session_id": header} if header else None)
    affinity.check_agrees(request, body.session_id, "session_id")
    service = request.app.state.service
    owner = request.state.owner
    params = body.to_sampling_params()
    echo = {affinity.HEADER: body.session_id}
    turn = service.chat_turn(owner, body.session_id, body.message, params)
    if body.stream:
        stream = await started(service.turn_stream(turn))
        events = ending_in_error_event(_chat_events(stream, body.message, body.session_id),
                                       lambda error: sse_event({"error": error.message}, event="error"), "chat")
        return event_stream(events, headers=echo, on_close=stream.aclose)
    result = await cancel_on_disconnect(request, last_of(service.turn_stream(turn), TurnResult))
    return JSONResponse(chat_response(body.message, body.session_id, result).model_dump(), headers=echo)


async def _chat_events(stream, message: str, session_id: str):
    """`delta` events as the reply is written, then `done` with the whole response; a failure
    after the stream began is an `error` event, and the round is not stored."""
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            if isinstance(item, TextDelta):
                yield sse_event({"delta": item.text}, event="delta")
            else:
                yield sse_event({**chat_response(message, session_id, item).model_dump(), "done": True}, event="done")


@router.post("/reset", openapi_extra=body(ResetRequest, required=False),
             responses=responses(ResetResponse, openai=False))
async def reset(request: Request):
    """Clear the default conversation, or the one named by session_id (JSON body, query, or the
    X-Conversation-ID header)."""
    header = affinity.from_header(request)  # as on /chat: the header names the session where nothing else does
    defaults = {"session_id": header} if header else {}
    reset_request = await parse_json_body(request, ResetRequest, body_optional=True,
                                           defaults={**defaults, **request.query_params})
    affinity.check_agrees(request, reset_request.session_id, "session_id")
    removed = await request.app.state.service.reset(request.state.owner, reset_request.session_id)
    return {"status": "success", "message": "conversation reset", "session_id": reset_request.session_id,
            "rounds_removed": removed}
