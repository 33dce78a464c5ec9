"""The Responses API: /v1/responses, stateful through previous_response_id or a conversation."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from pure_model_api.conversations import Message, new_id
from pure_model_api.engine.params import TextDelta
from pure_model_api.errors import ApiError, ModelNotFound
from pure_model_api.protocol.responses import (
    ItemList,
    ResponseDeleted,
    ResponseObject,
    ResponseRequest,
    item_object,
    list_object,
    response_object,
    status_of,
)
from pure_model_api.server import affinity
from pure_model_api.server.errors import parse_json_body
from pure_model_api.server.openapi import body, responses
from pure_model_api.server.streaming import cancel_on_disconnect, event_stream, primed, sse_event
from pure_model_api.service import Turn, TurnResult, last_of

router = APIRouter(prefix="/v1")
log = logging.getLogger(__name__)

PAGE_LIMIT = Query(20, ge=1, le=100)
PAGE_ORDER = Query("desc", pattern="^(asc|desc)$")


@router.post("/responses", response_model=None, openapi_extra=body(ResponseRequest),
             responses=responses(ResponseObject, openai=True, stream=True, generation=True))
async def create_response(request: Request):
    body = await parse_json_body(request, ResponseRequest)
    affinity.check_agrees(request, body.conversation_id, "conversation")
    if body.conversation_id is None and body.previous_response_id is None:
        body.conversation = affinity.named(request)
    if body.model not in request.app.state.settings.model_names:
        raise ModelNotFound(body.model)
    body.check_supported()
    service, owner = request.app.state.service, request.state.owner
    engine = service.require_engine()
    if body.previous_response_id is not None:  # a conversation is checked by the turn, under its lock
        await service.response(owner, body.previous_response_id, param="previous_response_id")
    response_id, created_at, output_id = new_id("resp"), time.time(), new_id("msg")

    def build(finished, dropped: int) -> dict:
        output = [item_object(Message("assistant", finished.text, id=output_id))]
        response = response_object(body, response_id, created_at, status=status_of(finished), output=output,
                                   finished=finished)
        return {**response, "dropped_rounds": dropped}  # rounds of history truncation left out

    turn = Turn(owner, body.input_messages(), body.sampling_params(engine.context_length),
                conversation_id=body.conversation_id, previous_response_id=body.previous_response_id,
                system=body.instructions, create=False, truncate=body.truncation == "auto", output_id=output_id,
                build_response=build, store_response=body.store)
    echo = {affinity.HEADER: body.conversation_id} if body.conversation_id else {}
    if body.stream:
        stream = await primed(service.turn_stream(turn))
        return event_stream(_events(stream, body, response_id, created_at, output_id), headers=echo,
                            on_close=stream.aclose)
    result = await cancel_on_disconnect(request, last_of(service.turn_stream(turn), TurnResult))
    return JSONResponse(result.response, headers=echo)


async def _events(stream, body: ResponseRequest, response_id: str, created_at: float, output_id: str):
    """The documented event sequence, each event with its type and sequence number."""
    numbers = itertools.count()
    where = {"item_id": output_id, "output_index": 0, "content_index": 0}

    def event(kind: str, **fields) -> str:
        return sse_event({"type": kind, "sequence_number": next(numbers), **fields}, event=kind)

    def part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": []}

    started = response_object(body, response_id, created_at, status="in_progress", output=[])
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    yield event("response.output_item.added", output_index=0,
                item=item_object(Message("assistant", "", id=output_id), status="in_progress"))
    yield event("response.content_part.added", **where, part=part(""))
    async with contextlib.aclosing(stream) as items:
        try:
            async for item in items:
                if isinstance(item, TextDelta):
                    yield event("response.output_text.delta", **where, delta=item.text, logprobs=[])
                    continue
                text = item.finish.text
                yield event("response.output_text.done", **where, text=text, logprobs=[])
                yield event("response.content_part.done", **where, part=part(text))
                yield event("response.output_item.done", output_index=0, item=item.response["output"][0])
                done = "response.completed" if item.response["status"] == "completed" else "response.incomplete"
                yield event(done, response=item.response)
        except Exception as error:  # noqa: BLE001 - the client gets response.failed; nothing was stored
            if not isinstance(error, ApiError):
                log.exception("response stream failed")
                error = ApiError("internal server error; see the server log")
            failed = response_object(body, response_id, created_at, status="failed", output=[],
                                     error={"code": error.code or "server_error", "message": error.message})
            yield event("response.failed", response=failed)


@router.get("/responses/{response_id}", responses=responses(ResponseObject, openai=True))
async def get_response(response_id: str, request: Request):
    return await request.app.state.service.response(request.state.owner, response_id)


@router.delete("/responses/{response_id}", responses=responses(ResponseDeleted, openai=True))
async def delete_response(response_id: str, request: Request):
    await request.app.state.service.delete_response(request.state.owner, response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/responses/{response_id}/input_items", responses=responses(ItemList, openai=True))
async def input_items(response_id: str, request: Request, after: str | None = None, limit: int = PAGE_LIMIT,
                      order: str = PAGE_ORDER):
    page, has_more = await request.app.state.service.input_items(request.state.owner, response_id, after, limit,
                                                                 order)
    return list_object([item_object(m) for m in page], has_more)
