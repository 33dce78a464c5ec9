"""OpenAI's stateful surface: the Responses API (/v1/responses) and the Conversations API
(/v1/conversations), as OpenAI documents their objects."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pure_model_api.conversations import Message, new_id
from pure_model_api.engine import ToolRequest
from pure_model_api.engine.params import Finished, SamplingParams
from pure_model_api.errors import BadRequest
from pure_model_api.protocol.limits import MAX_MESSAGES, Metadata, RequiredMetadata
from pure_model_api.protocol.reply import Reply
from pure_model_api.protocol.structured import NAME, TextOptions
from pure_model_api.protocol.tools import MAX_ARGUMENTS, MAX_TOOLS, FunctionDefinition, NamedFunction, tool_request

# Accepted, and cannot change the answer here.
HARMLESS_FIELDS = {"service_tier", "prompt_cache_key", "safety_identifier", "stream_options",
                   "top_logprobs"}
DEFAULT_MAX_OUTPUT_TOKENS = 1024


class ContentPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["input_text", "output_text", "text"]
    text: str


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[ContentPart]

    def as_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return Message(self.role, text)


class FunctionCallInput(BaseModel):
    """A call the model made, sent back (a client that keeps its own history does)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str = Field(pattern=NAME)
    arguments: str = Field(max_length=MAX_ARGUMENTS)

    def as_message(self) -> Message:
        return Message("function_call", self.arguments, extra={"call_id": self.call_id, "name": self.name})


class FunctionCallOutputInput(BaseModel):
    """A tool's result, for the call with `call_id` (in the input, the chain or the conversation)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str

    def as_message(self) -> Message:
        return Message("function_call_output", self.output, extra={"call_id": self.call_id})


InputItem = Annotated[InputMessage | FunctionCallInput | FunctionCallOutputInput, Field(union_mode="left_to_right")]


class ResponsesFunctionTool(FunctionDefinition):
    """A function tool as the Responses API spells it: chat's definition, flat, with its type."""

    type: Literal["function"]


class ResponsesNamedChoice(NamedFunction):
    """`tool_choice` naming a function, flat."""

    type: Literal["function"]


class ConversationRef(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str


class ResponseRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    input: str | Annotated[list[InputItem], Field(max_length=MAX_MESSAGES)] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    truncation: Literal["auto", "disabled"] = "disabled"
    metadata: Metadata = None
    user: str | None = None
    tools: list[dict] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | ResponsesNamedChoice | None = None
    parallel_tool_calls: bool = True
    reasoning: dict | None = None
    text: TextOptions | None = None
    background: bool | None = None
    include: list[str] | None = None

    def check_supported(self) -> None:
        """A 400 naming any field that would change the meaning and is not implemented."""
        unknown = sorted(set(self.model_extra or {}) - HARMLESS_FIELDS)
        if unknown:
            raise BadRequest(f"unsupported field(s): {', '.join(unknown)}", param=unknown[0])
        for tool in self.tools or []:
            if tool.get("type") != "function":
                raise BadRequest(f"tools of type '{tool.get('type')}' are not supported here: only function tools",
                                 param="tools")
        if self.reasoning:
            raise BadRequest("reasoning is not supported", param="reasoning")
        if self.background:
            raise BadRequest("background responses are not supported", param="background")
        if self.include:
            raise BadRequest("include is not supported: there is nothing extra to include", param="include")
        if self.conversation is not None and self.previous_response_id is not None:
            raise BadRequest("use either conversation or previous_response_id, not both", param="conversation")

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation

    def input_messages(self) -> list[Message]:
        if isinstance(self.input, str):
            return [Message("user", self.input)]
        return [item.as_message() for item in self.input]

    def tool_request(self) -> ToolRequest | None:
        """The function tools, each schema checked (in a worker thread: compiling costs in its size)."""
        try:
            functions = [ResponsesFunctionTool.model_validate(tool) for tool in self.tools or []]
        except ValidationError as error:
            raise BadRequest(f"a function tool is malformed: {error.errors()[0]['msg']}", param="tools") from error
        choice = self.tool_choice.name if isinstance(self.tool_choice, ResponsesNamedChoice) else self.tool_choice
        structured = self.text is not None and self.text.format.type != "text"
        return tool_request(functions, choice, self.parallel_tool_calls, structured, format_param="text.format")

    def sampling_params(self, context_length: int) -> SamplingParams:
        max_tokens = self.max_output_tokens or min(DEFAULT_MAX_OUTPUT_TOKENS, context_length // 2)
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
                              json_schema=self.text.format.schema_text() if self.text else None)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[InputItem] = Field(default_factory=list, max_length=20)
    metadata: Metadata = None


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    metadata: RequiredMetadata


class ItemsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[InputItem] = Field(min_length=1, max_length=20)


# ---- the objects: each shape is one model, built from it here and described by the OpenAPI document ----
class InputText(Reply):
    type: Literal["input_text"] = "input_text"
    text: str


class OutputText(Reply):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = Field(default_factory=list)


class ItemObject(Reply):
    id: str
    type: Literal["message"] = "message"
    status: str
    role: str
    content: list[InputText | OutputText]

    @classmethod
    def of(cls, message: Message, status: str = "completed") -> ItemObject:
        if message.role != "assistant":
            content = [InputText(text=message.text)]
        else:  # a reply still being written has no part yet
            content = [OutputText(text=message.text)] if message.text or status == "completed" else []
        return cls(id=message.id, status=status, role=message.role, content=content)


class FunctionCallObject(Reply):
    id: str
    type: Literal["function_call"] = "function_call"
    status: str
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputObject(Reply):
    id: str
    type: Literal["function_call_output"] = "function_call_output"
    status: str = "completed"
    call_id: str
    output: str


AnyItem = ItemObject | FunctionCallObject | FunctionCallOutputObject


def item_of(message: Message, status: str = "completed") -> AnyItem:
    """A stored item as the API shows it: a message, a function call or a call's output."""
    if message.role == "function_call":
        return FunctionCallObject(id=message.id, status=status, call_id=message.extra["call_id"],
                                  name=message.extra["name"], arguments=message.text)
    if message.role == "function_call_output":
        return FunctionCallOutputObject(id=message.id, call_id=message.extra["call_id"], output=message.text)
    return ItemObject.of(message, status)


class ItemList(Reply):
    object: Literal["list"] = "list"
    data: list[AnyItem]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, messages: list[Message], has_more: bool) -> ItemList:
        items = [item_of(m) for m in messages]
        return cls(data=items, first_id=items[0].id if items else None, last_id=items[-1].id if items else None,
                   has_more=has_more)


class ConversationObject(Reply):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: dict) -> ConversationObject:
        return cls(id=row["id"], created_at=int(row["created_at"]), metadata=row.get("metadata") or {})


class ConversationDeleted(Reply):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ResponseDeleted(Reply):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class InputTokensDetails(Reply):
    cached_tokens: int


class OutputTokensDetails(Reply):
    reasoning_tokens: int = 0


class ResponseUsage(Reply):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int

    @classmethod
    def of(cls, finished: Finished) -> ResponseUsage:
        return cls(input_tokens=finished.prompt_tokens,
                   input_tokens_details=InputTokensDetails(cached_tokens=finished.cached_tokens),
                   output_tokens=finished.completion_tokens,
                   total_tokens=finished.prompt_tokens + finished.completion_tokens)


class ResponseObject(Reply):
    """Every field OpenAI documents; what the request set is echoed. A stored response may carry
    `dropped_rounds` beside them: the rounds of history that truncation left out."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    error: dict | None = None
    incomplete_details: dict | None = None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[AnyItem]
    parallel_tool_calls: bool = True
    previous_response_id: str | None
    conversation: ConversationRef | None
    reasoning: None = None
    store: bool
    temperature: float
    top_p: float
    text: TextOptions = TextOptions()
    tool_choice: str | dict = "auto"
    tools: list = Field(default_factory=list)
    truncation: str
    usage: ResponseUsage | None = None
    user: str | None
    metadata: dict[str, str]


class ResponseDraft:
    """One /v1/responses call's answer before it is known: its ids and what the request set. The
    route shows it `started` and `failed`; the service makes it `finished` when the turn ends, and
    stores that (with the rounds of history truncation left out, for its input items)."""

    def __init__(self, request: ResponseRequest):
        self.request = request
        self.response_id, self.output_id, self.created_at = new_id("resp"), new_id("msg"), int(time.time())

    def started(self) -> dict:
        return self._object("in_progress", [])

    def output_item(self, text: str, status: str = "completed") -> ItemObject:
        return ItemObject.of(Message("assistant", text, id=self.output_id), status=status)

    def finished(self, finished: Finished, outputs: list[Message], dropped_rounds: int) -> dict:
        status = "incomplete" if finished.finish_reason == "length" else "completed"
        items = [item_of(m, "incomplete" if status == "incomplete" and m.role == "function_call" else "completed")
                 for m in outputs]
        return {**self._object(status, items, finished), "dropped_rounds": dropped_rounds}

    def failed(self, code: str, message: str) -> dict:
        return self._object("failed", [], error={"code": code, "message": message})

    def _object(self, status: str, output: list[AnyItem], finished: Finished | None = None,
                error: dict | None = None) -> dict:
        request, cid = self.request, self.request.conversation_id
        return ResponseObject(
            id=self.response_id, created_at=self.created_at, status=status, error=error,
            incomplete_details={"reason": "max_output_tokens"} if status == "incomplete" else None,
            instructions=request.instructions, max_output_tokens=request.max_output_tokens, model=request.model,
            output=output, previous_response_id=request.previous_response_id,
            conversation=ConversationRef(id=cid) if cid else None, store=request.store,
            temperature=request.temperature, top_p=request.top_p, text=request.text or TextOptions(),
            truncation=request.truncation, tools=request.tools or [], parallel_tool_calls=request.parallel_tool_calls,
            tool_choice=_dumped(request.tool_choice) or "auto",
            usage=ResponseUsage.of(finished) if finished else None, user=request.user,
            metadata=request.metadata or {},
        ).model_dump()


def _dumped(value):
    return value.model_dump() if isinstance(value, BaseModel) else value
