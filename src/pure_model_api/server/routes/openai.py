"""OpenAI-compatible endpoints over the same engine. Stateless: the client sends the history."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Request

from pure_model_api.engine.params import ToolCallDelta
from pure_model_api.errors import ModelNotFound
from pure_model_api.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Chunks,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
    completion_reply,
    new_id,
)
from pure_model_api.server.errors import error_body, parse_json_body
from pure_model_api.server.openapi import body, responses
from pure_model_api.server.streaming import (
    cancel_on_disconnect,
    ending_in_error_event,
    event_stream,
    sse_event,
    started,
)
from pure_model_api.service import Turn, TurnResult

router = APIRouter(prefix="/v1")


def served_names(request: Request) -> list[str]:
    """The names the model answers to: --model (`qwen` too), what it resolved to, --served-model-name."""
    names = request.app.state.settings.model_names
    engine = request.app.state.service.engine
    resolved = engine.options.model if engine is not None else None
    return names + [resolved] if resolved and resolved not in names else names


def _check_model(request: Request, model: str) -> None:
    if model not in served_names(request):
        raise ModelNotFound(model)


@router.get("/models", responses=responses(ModelList, openai=True))
async def list_models(request: Request):
    created = int(request.app.state.service.started_at)
    return ModelList(data=[ModelCard(id=name, created=created) for name in served_names(request)]).model_dump()


@router.get("/models/{model_id:path}", responses=responses(ModelCard, openai=True))
async def get_model(model_id: str, request: Request):
    _check_model(request, model_id)
    return ModelCard(id=model_id, created=int(request.app.state.service.started_at)).model_dump()


@router.post("/chat/completions", response_model=None, openapi_extra=body(ChatCompletionRequest),
             responses=responses(ChatCompletion, openai=True, stream=True, generation=True))
async def chat_completions(request: Request):
    body = await parse_json_body(request, ChatCompletionRequest)
    _check_model(request, body.model)
    body.check_supported()
    max_tokens = body.requested_max_tokens
    # in a worker thread: a JSON schema is compiled to check it, at a cost in its size (up to the body limit)
    params = await asyncio.to_thread(body.sampling_params, max_tokens or 1)
    tools = await asyncio.to_thread(body.tool_request)
    turn = Turn(request.state.owner, body.input_messages(), params, truncate=False,
                fill_context=max_tokens is None, tools=tools)
    return await _complete(request, body, turn, chat=True)


@router.post("/completions", response_model=None, openapi_extra=body(CompletionRequest),
             responses=responses(Completion, openai=True, stream=True, generation=True))
async def completions(request: Request):
    body = await parse_json_body(request, CompletionRequest)
    _check_model(request, body.model)
    body.check_supported()
    turn = Turn(request.state.owner, [], body.sampling_params(body.max_tokens), raw_prompt=body.prompt_text)
    return await _complete(request, body, turn, chat=False)


async def _complete(request: Request, body, turn: Turn, chat: bool):
    """A stateless turn: nothing is read from the store or written to it."""
    service = request.app.state.service
    request_id = new_id("chatcmpl" if chat else "cmpl", "-")
    if body.stream:
        stream = await started(service.choices_stream(turn, body.n))  # what fails before any output is an HTTP error
        chunks = Chunks(chat, request_id, body.model, body.include_usage, body.logprob_alternatives is not None)
        events = ending_in_error_event(_chunks(stream, chunks, body.n),
                                       lambda error: sse_event(error_body("/v1", error)),
                                       "completion", last="data: [DONE]\n\n")
        return event_stream(events, on_close=stream.aclose)
    finishes = await cancel_on_disconnect(request, _finishes(service.choices_stream(turn, body.n), body.n))
    return completion_reply(chat, request_id, body.model, finishes)


async def _finishes(stream, n: int) -> list:
    """Each choice's Finished, in choice order."""
    finishes = [None] * n
    async with contextlib.aclosing(stream) as items:
        async for index, item in items:
            if isinstance(item, TurnResult):
                finishes[index] = item.finish
    return finishes


async def _chunks(stream, chunks: Chunks, n: int):
    async with contextlib.aclosing(stream) as items:
        if chunks.chat:
            for index in range(n):
                yield sse_event(chunks.text(index=index, first=True))
        finishes = {}
        async for index, item in items:
            if isinstance(item, TurnResult):
                finishes[index] = item.finish
                yield sse_event(chunks.text(index=index, finish_reason=item.finish.finish_reason))
            elif isinstance(item, ToolCallDelta):
                yield sse_event(chunks.tool_call(item, index=index))
            else:
                yield sse_event(chunks.text(item.text, index=index, logprobs=item.logprobs))
        if chunks.include_usage:
            yield sse_event(chunks.usage([finishes[i] for i in sorted(finishes)]))
