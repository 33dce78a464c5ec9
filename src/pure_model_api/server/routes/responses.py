"""The Responses API: /v1/responses, stateful through previous_response_id or a conversation."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from pure_model_api.engine.params import TextDelta, ToolCallDelta
from pure_model_api.errors import ApiError, ModelNotFound
from pure_model_api.protocol.responses import (
    FunctionCallObject,
    ItemList,
    OutputText,
    ResponseDeleted,
    ResponseDraft,
    ResponseObject,
    ResponseRequest,
)
from pure_model_api.server import affinity
from pure_model_api.server.errors import parse_json_body
from pure_model_api.server.openapi import body, responses
from pure_model_api.server.routes.openai import served_names
from pure_model_api.server.streaming import (
    cancel_on_disconnect,
    ending_in_error_event,
    event_stream,
    sse_event,
    started,
)
from pure_model_api.service import Turn, TurnResult, last_of

router = APIRouter(prefix="/v1")

PAGE_LIMIT = Query(20, ge=1, le=100)
PAGE_ORDER = Query("desc", pattern="^(asc|desc)$")


@router.post("/responses", response_model=None, openapi_extra=body(ResponseRequest),
             responses=responses(ResponseObject, openai=True, stream=True, generation=True))
async def create_response(request: Request):
    body = await parse_json_body(request, ResponseRequest)
    affinity.check_agrees(request, body.conversation_id, "conversation")
    if body.conversation_id is None and body.previous_response_id is None:
        body.conversation = affinity.from_header(request)
    if body.model not in served_names(request):
        raise ModelNotFound(body.model)
    body.check_supported()
    service, owner = request.app.state.service, request.state.owner
    engine = service.require_engine()
    if body.previous_response_id is not None:  # a conversation is checked by the turn, under its lock
        await service.response(owner, body.previous_response_id, param="previous_response_id")
    draft = ResponseDraft(body)
    params = await asyncio.to_thread(body.sampling_params, engine.context_length)  # a schema's check, off the loop
    tools = await asyncio.to_thread(body.tool_request)
    turn = Turn(owner, body.input_messages(), params, tools=tools,
                conversation_id=body.conversation_id, previous_response_id=body.previous_response_id,
                system=body.instructions, create=False, truncate=body.truncation == "auto", response=draft,
                store_response=body.store)
    echo = {affinity.HEADER: body.conversation_id} if body.conversation_id else {}
    if body.stream:
        stream = await started(service.turn_stream(turn))
        events = ResponseEvents(draft)
        return event_stream(ending_in_error_event(events.of(stream), events.failed, "response"), headers=echo,
                            on_close=stream.aclose)
    result = await cancel_on_disconnect(request, last_of(service.turn_stream(turn), TurnResult))
    return JSONResponse(result.response, headers=echo)


class ResponseEvents:
    """The documented event sequence of one streamed response, each event with its type and
    sequence number: the reply's text as a message item (opened at its first text), each function
    call as a function_call item whose arguments stream as they are decoded."""

    def __init__(self, draft: ResponseDraft):
        self.draft = draft
        self.numbers = itertools.count()
        self.items = 0  # output items opened
        self.message: dict | None = None  # where the message item's events go, once it is open
        self.calls: dict[int, dict] = {}  # the call's index in the reply -> where its events go

    def event(self, kind: str, **fields) -> str:
        return sse_event({"type": kind, "sequence_number": next(self.numbers), **fields}, event=kind)

    async def of(self, stream):
        draft, event = self.draft, self.event
        yield event("response.created", response=draft.started())
        yield event("response.in_progress", response=draft.started())
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                if isinstance(item, TextDelta):
                    if self.message is None and not item.text:
                        continue  # nothing to show yet
                    for opened in self._open_message():
                        yield opened
                    yield event("response.output_text.delta", **self.message, delta=item.text, logprobs=[])
                elif isinstance(item, ToolCallDelta):
                    for shown in self._call(item):
                        yield shown
                else:
                    for shown in self._done(item):
                        yield shown

    def _open_message(self):
        if self.message is not None:
            return
        self.message = {"item_id": self.draft.output_id, "output_index": self._next(), "content_index": 0}
        yield self.event("response.output_item.added", output_index=self.message["output_index"],
                         item=self.draft.output_item("", status="in_progress").model_dump())
        yield self.event("response.content_part.added", **self.message, part=OutputText(text="").model_dump())

    def _call(self, delta: ToolCallDelta):
        if delta.id is not None:
            where = self.calls[delta.index] = {"item_id": "fc_" + delta.id.removeprefix("call_"),
                                               "output_index": self._next()}
            item = FunctionCallObject(id=where["item_id"], status="in_progress", call_id=delta.id, name=delta.name,
                                      arguments="")
            yield self.event("response.output_item.added", output_index=where["output_index"], item=item.model_dump())
        elif delta.arguments:
            yield self.event("response.function_call_arguments.delta", **self.calls[delta.index],
                             delta=delta.arguments)

    def _done(self, result: TurnResult):
        response = result.response
        shown = {item["id"]: item for item in response["output"]}
        if self.message is None and self.draft.output_id in shown:  # an empty reply still has its message
            yield from self._open_message()
        if self.message is not None:
            text = result.finish.text
            yield self.event("response.output_text.done", **self.message, text=text, logprobs=[])
            yield self.event("response.content_part.done", **self.message, part=OutputText(text=text).model_dump())
            yield self.event("response.output_item.done", output_index=self.message["output_index"],
                             item=shown[self.draft.output_id])
        for where in self.calls.values():
            item = shown[where["item_id"]]
            yield self.event("response.function_call_arguments.done", **where, name=item["name"],
                             arguments=item["arguments"])
            yield self.event("response.output_item.done", output_index=where["output_index"], item=item)
        done = "response.completed" if response["status"] == "completed" else "response.incomplete"
        yield self.event(done, response=response)

    def _next(self) -> int:
        self.items += 1
        return self.items - 1

    def failed(self, error: ApiError) -> str:
        """The client gets response.failed; nothing was stored."""
        return self.event("response.failed", response=self.draft.failed(error.code or "server_error", error.message))


@router.get("/responses/{response_id}", responses=responses(ResponseObject, openai=True))
async def get_response(response_id: str, request: Request):
    return await request.app.state.service.response(request.state.owner, response_id)


@router.delete("/responses/{response_id}", responses=responses(ResponseDeleted, openai=True))
async def delete_response(response_id: str, request: Request):
    await request.app.state.service.delete_response(request.state.owner, response_id)
    return ResponseDeleted(id=response_id).model_dump()


@router.get("/responses/{response_id}/input_items", responses=responses(ItemList, openai=True))
async def input_items(response_id: str, request: Request, after: str | None = None, limit: int = PAGE_LIMIT,
                      order: str = PAGE_ORDER):
    page, has_more = await request.app.state.service.input_items(request.state.owner, response_id, after, limit,
                                                                 order)
    return ItemList.of(page, has_more).model_dump()
