"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pure_model_api.conversations import Message, new_id  # noqa: F401 - new_id: the surface's ids, `chatcmpl-...`
from pure_model_api.engine import ToolRequest
from pure_model_api.engine.params import Finished, SamplingParams, ToolCallDelta
from pure_model_api.errors import BadRequest
from pure_model_api.protocol.limits import MAX_MESSAGES, Metadata, Seed, Stop
from pure_model_api.protocol.logprobs import ChatLogprobs, CompletionLogprobs
from pure_model_api.protocol.reply import Reply
from pure_model_api.protocol.structured import NAME, ResponseFormat
from pure_model_api.protocol.tools import (
    MAX_ARGUMENTS,
    MAX_TOOLS,
    FunctionTool,
    NamedToolChoice,
    ToolCallChunk,
    ToolCallObject,
    tool_request,
)

MAX_TOP_LOGPROBS = 20  # as vLLM's default max_logprobs
# Fields the service accepts but that cannot change the answer here.
HARMLESS_EXTRA_FIELDS = {"metadata", "store", "service_tier"}


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str = Field(pattern=NAME)
    arguments: str = Field(max_length=MAX_ARGUMENTS)


class ToolCallIn(BaseModel):
    """A call in an assistant message the client sends back."""

    model_config = ConfigDict(strict=True)

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None  # None only for an assistant's (tool-calling) turn
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=MAX_TOOLS)  # an assistant's calls
    tool_call_id: str | None = Field(None, min_length=1, max_length=256)  # a tool message: the call it answers

    @model_validator(mode="after")
    def _has_content(self) -> ChatMessage:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("a tool message needs tool_call_id, and only a tool message has one")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message has tool_calls")
        return self

    def as_message(self) -> Message:
        extra = {}
        if self.tool_calls:
            extra["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            extra["tool_call_id"] = self.tool_call_id
        return Message(self.role, self.text, extra=extra)

    @property
    def text(self) -> str:
        content = self.content or ""
        return content if isinstance(content, str) else "".join(part.text for part in content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class _GenerationRequest(BaseModel):
    """What both completion endpoints share."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: Stop = None
    seed: Seed | None = None
    n: int = Field(1, ge=1, le=128)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None

    def check_supported(self) -> None:
        """A 400 naming any field that would change the answer's meaning and is not implemented."""
        unknown = sorted(set(self.model_extra or {}) - HARMLESS_EXTRA_FIELDS)
        if unknown:
            raise BadRequest(f"unsupported field(s): {', '.join(unknown)}", param=unknown[0])
        if self.logit_bias:
            raise BadRequest("logit_bias is not supported", param="logit_bias")

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
                              seed=self.seed, stop=stop, presence_penalty=self.presence_penalty,
                              frequency_penalty=self.frequency_penalty, logprobs=self.logprob_alternatives)

    @property
    def logprob_alternatives(self) -> int | None:
        """None: no log-probabilities; n: each token's and its n likeliest alternatives."""
        return None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    metadata: Metadata = None
    tools: list[FunctionTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def check_supported(self) -> None:
        super().check_supported()
        if self.top_logprobs is not None and not self.logprobs:
            raise BadRequest("top_logprobs needs logprobs: true", param="top_logprobs")

    def tool_request(self) -> ToolRequest | None:
        """The tools, each one's schema checked (in a worker thread: compiling costs in its size)."""
        choice = self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else self.tool_choice
        return tool_request([t.function for t in self.tools or []], choice, self.parallel_tool_calls,
                            self.response_format is not None and self.response_format.type != "text")

    @property
    def logprob_alternatives(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        schema = self.response_format.schema_text() if self.response_format else None
        return dataclasses.replace(super().sampling_params(max_tokens), json_schema=schema)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def input_messages(self) -> list[Message]:
        return [m.as_message() for m in self.messages]


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1, le=1_000_000)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def check_supported(self) -> None:
        super().check_supported()
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise BadRequest("prompt must be one string (batches of prompts are not supported)", param="prompt")
        if self.echo:
            raise BadRequest("echo is not supported", param="echo")
        if self.suffix:
            raise BadRequest("suffix is not supported", param="suffix")
        if self.best_of not in (None, 1):
            raise BadRequest("best_of is not supported", param="best_of")

    @property
    def logprob_alternatives(self) -> int | None:
        return self.logprobs

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


# ---- the replies: each shape is one model, built from it here and described by the OpenAPI document ----
class ErrorDetail(Reply):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(Reply):
    error: ErrorDetail


class PromptTokensDetails(Reply):
    cached_tokens: int


class UsageObject(Reply):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails

    @classmethod
    def of(cls, finishes: list[Finished]) -> UsageObject:
        """One request's usage, however many choices: the prompt counted once (and as cached what was
        before the request: choices after the first may copy its cells), every choice's tokens."""
        prompt, completion = finishes[0].prompt_tokens, sum(f.completion_tokens for f in finishes)
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                   prompt_tokens_details=PromptTokensDetails(cached_tokens=min(f.cached_tokens for f in finishes)))


class AssistantMessage(Reply):
    role: Literal["assistant"] = "assistant"
    content: str | None  # None: a reply that only calls tools
    tool_calls: list[ToolCallObject] | None = None

    @classmethod
    def of(cls, finished: Finished) -> AssistantMessage:
        calls = [ToolCallObject.of(call) for call in finished.tool_calls] or None
        return cls(content=finished.text if finished.text or not calls else None, tool_calls=calls)


class ChatChoice(Reply):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: ChatLogprobs | None = None


class CompletionChoice(Reply):
    index: int = 0
    text: str
    finish_reason: str
    logprobs: CompletionLogprobs | None = None


class _Envelope(Reply):
    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: None = None


class ChatCompletion(_Envelope):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: UsageObject


class Completion(_Envelope):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: UsageObject


def completion_reply(chat: bool, request_id: str, model: str, finishes: list[Finished]) -> dict:
    """The whole answer of /v1/chat/completions (`chat`) or /v1/completions: a choice per Finished."""
    usage = UsageObject.of(finishes)
    if chat:
        choices = [ChatChoice(index=i, message=AssistantMessage.of(f), finish_reason=f.finish_reason,
                              logprobs=ChatLogprobs.of(f.logprobs) if f.logprobs is not None else None)
                   for i, f in enumerate(finishes)]
        return ChatCompletion(id=request_id, model=model, choices=choices, usage=usage).model_dump()
    choices = [CompletionChoice(index=i, text=f.text, finish_reason=f.finish_reason,
                                logprobs=CompletionLogprobs.of(f.logprobs) if f.logprobs is not None else None)
               for i, f in enumerate(finishes)]
    return Completion(id=request_id, model=model, choices=choices, usage=usage).model_dump()


class ChunkDelta(Reply):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallChunk] | None = None


class ChatChunkChoice(Reply):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class CompletionChunkChoice(Reply):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class ChatCompletionChunk(_Envelope):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: UsageObject | None = None


class CompletionChunk(_Envelope):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChunkChoice]
    usage: UsageObject | None = None


class Chunks:
    """The streamed answer's chunks, one request's: the same id and `created` in each. A delta
    names only what it carries (`role` in the first, `content` after); `usage` is in every
    chunk only when the client asked for it (null, then the totals in a last chunk of its own)."""

    def __init__(self, chat: bool, request_id: str, model: str, include_usage: bool, logprobs: bool = False):
        self.chat, self.include_usage, self.logprobs = chat, include_usage, logprobs
        self.envelope = {"id": request_id, "model": model, "created": int(time.time())}
        self.offsets: dict[int, int] = {}  # choice -> length of its text so far: a completion's text_offset

    def _dump(self, chunk: _Envelope) -> dict:
        body = chunk.model_dump(exclude=None if self.include_usage else {"usage"})
        for choice in body["choices"]:
            if "delta" in choice:
                choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        return body

    def text(self, text: str | None = None, *, index: int = 0, finish_reason: str | None = None,
             first: bool = False, logprobs=()) -> dict:
        """A chunk of choice `index`'s text; `logprobs`: its tokens', shown when the request asked."""
        shown = self.logprobs and not first and finish_reason is None
        if self.chat:
            delta = ChunkDelta(role="assistant", content="") if first else ChunkDelta(content=text)
            return self._dump(ChatCompletionChunk(**self.envelope, choices=[ChatChunkChoice(
                index=index, delta=delta, finish_reason=finish_reason,
                logprobs=ChatLogprobs.of(logprobs) if shown else None)]))
        offset = self.offsets.get(index, 0)
        chunk = CompletionChunk(**self.envelope, choices=[CompletionChunkChoice(
            index=index, text=text or "", finish_reason=finish_reason,
            logprobs=CompletionLogprobs.of(logprobs, offset) if shown else None)])
        self.offsets[index] = offset + len(text or "")
        return self._dump(chunk)

    def tool_call(self, delta: ToolCallDelta, *, index: int = 0) -> dict:
        """A chunk of a call: its id, type and name first, then pieces of its arguments."""
        piece = ToolCallChunk.of(delta)
        body = self._dump(ChatCompletionChunk(**self.envelope, choices=[ChatChunkChoice(
            index=index, delta=ChunkDelta(tool_calls=[piece]))]))
        body["choices"][0]["delta"]["tool_calls"] = [piece.shown()]
        return body

    def usage(self, finishes: list[Finished]) -> dict:
        kind = ChatCompletionChunk if self.chat else CompletionChunk
        return self._dump(kind(**self.envelope, choices=[], usage=UsageObject.of(finishes)))


class ModelCard(Reply):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "pure-model-api"


class ModelList(Reply):
    object: Literal["list"] = "list"
    data: list[ModelCard]
