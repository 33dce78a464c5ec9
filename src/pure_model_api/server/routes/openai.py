"""OpenAI-compatible endpoints over the same engine. Stateless: the client sends the history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, Request

from pure_model_api.engine.params import Finished
from pure_model_api.errors import ApiError, ModelNotFound
from pure_model_api.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
    envelope,
    model_card,
    new_id,
    usage,
)
from pure_model_api.server.errors import error_body, parse_json_body
from pure_model_api.server.openapi import body, responses
from pure_model_api.server.streaming import cancel_on_disconnect, event_stream, sse_event
from pure_model_api.service import last_of

router = APIRouter(prefix="/v1")
log = logging.getLogger(__name__)


def _served_names(request: Request) -> list[str]:
    return request.app.state.settings.model_names


def _check_model(request: Request, model: str) -> None:
    if model not in _served_names(request):
        raise ModelNotFound(model)


@router.get("/models", responses=responses(ModelList, openai=True))
async def list_models(request: Request):
    created = int(request.app.state.service.started_at)
    return {"object": "list", "data": [model_card(name, created) for name in _served_names(request)]}


@router.get("/models/{model_id:path}", responses=responses(ModelCard, openai=True))
async def get_model(model_id: str, request: Request):
    _check_model(request, model_id)
    return model_card(model_id, int(request.app.state.service.started_at))


@router.post("/chat/completions", response_model=None, openapi_extra=body(ChatCompletionRequest),
             responses=responses(ChatCompletion, openai=True, stream=True, generation=True))
async def chat_completions(request: Request):
    body = await parse_json_body(request, ChatCompletionRequest)
    _check_model(request, body.model)
    body.check_supported()
    service = request.app.state.service
    prompt_ids = await asyncio.to_thread(service.render_messages, body.template_messages())
    return await _complete(request, body, prompt_ids, body.requested_max_tokens, chat=True)


@router.post("/completions", response_model=None, openapi_extra=body(CompletionRequest),
             responses=responses(Completion, openai=True, stream=True, generation=True))
async def completions(request: Request):
    body = await parse_json_body(request, CompletionRequest)
    _check_model(request, body.model)
    body.check_supported()
    prompt_ids = await asyncio.to_thread(request.app.state.service.encode, body.prompt_text)
    return await _complete(request, body, prompt_ids, body.max_tokens, chat=False)


async def _complete(request: Request, body, prompt_ids: list[int], max_tokens: int | None, chat: bool):
    service = request.app.state.service
    if max_tokens is None:  # OpenAI's default: whatever room the context leaves
        max_tokens = max(service.require_engine().context_length - len(prompt_ids), 1)
    handle = service.submit(prompt_ids, body.sampling_params(max_tokens))  # context errors: 400 here
    kind = "chat.completion" if chat else "text_completion"
    request_id = new_id("chatcmpl" if chat else "cmpl", "-")
    if body.stream:
        chunks = _chunks(service.stream(handle), kind, request_id, body, chat)
        return event_stream(chunks, on_close=handle.cancel)
    try:
        finished = await cancel_on_disconnect(request, last_of(service.stream(handle), Finished))
    finally:
        handle.cancel()  # a no-op once finished; else the generation would run on unobserved
    choice = {"index": 0, "finish_reason": finished.finish_reason, "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": finished.text}} if chat else {"text": finished.text})
    return envelope(kind, request_id, body.model, [choice],
                    usage=usage(finished))


async def _chunks(events, kind: str, request_id: str, body, chat: bool):
    kind = kind + ".chunk" if chat else kind

    def chunk(delta_text: str | None, finish_reason: str | None = None, first: bool = False) -> str:
        if chat:
            delta = {"role": "assistant", "content": ""} if first else (
                {"content": delta_text} if delta_text is not None else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": delta_text or "", "finish_reason": finish_reason, "logprobs": None}
        extra = {"usage": None} if body.include_usage else {}
        return "data: " + json.dumps(envelope(kind, request_id, body.model, [choice], **extra),
                                     ensure_ascii=False) + "\n\n"

    async with contextlib.aclosing(events) as stream:
        try:
            if chat:
                yield chunk(None, first=True)
            async for event in stream:
                if isinstance(event, Finished):
                    yield chunk(None, event.finish_reason)
                    if body.include_usage:
                        payload = envelope(kind, request_id, body.model, [],
                                           usage=usage(event))
                        yield sse_event(payload)
                else:
                    yield chunk(event.text)
        except ApiError as error:
            yield sse_event(error_body("/v1", error))
        except Exception:  # noqa: BLE001 - logged; the client gets an error event
            log.exception("completion stream failed")
            yield sse_event(error_body("/v1", ApiError("internal server error; see the server log")))
    yield "data: [DONE]\n\n"
