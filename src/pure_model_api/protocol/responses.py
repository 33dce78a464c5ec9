"""OpenAI's stateful surface: the Responses API (/v1/responses) and the Conversations API
(/v1/conversations), as OpenAI documents their objects."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pure_model_api.conversations import Message
from pure_model_api.engine.params import Finished, SamplingParams
from pure_model_api.errors import BadRequest
from pure_model_api.protocol.limits import MAX_MESSAGES, Metadata, RequiredMetadata

# Accepted, and cannot change the answer here.
HARMLESS_FIELDS = {"service_tier", "parallel_tool_calls", "prompt_cache_key", "safety_identifier", "stream_options",
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


class ConversationRef(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str


class ResponseRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    input: str | Annotated[list[InputMessage], Field(max_length=MAX_MESSAGES)] = Field(min_length=1)
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
    tools: list | None = None
    tool_choice: str | dict | None = None
    reasoning: dict | None = None
    text: dict | None = None
    background: bool | None = None
    include: list[str] | None = None

    def check_supported(self) -> None:
        """A 400 naming any field that would change the meaning and is not implemented."""
        unknown = sorted(set(self.model_extra or {}) - HARMLESS_FIELDS)
        if unknown:
            raise BadRequest(f"unsupported field(s): {', '.join(unknown)}", param=unknown[0])
        if self.tools or self.tool_choice not in (None, "none", "auto"):
            raise BadRequest("tools are not supported", param="tools")
        if self.reasoning:
            raise BadRequest("reasoning is not supported", param="reasoning")
        text_format = (self.text or {}).get("format") or {"type": "text"}
        if text_format.get("type") != "text":
            raise BadRequest("text.format other than text is not supported", param="text")
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

    def sampling_params(self, context_length: int) -> SamplingParams:
        max_tokens = self.max_output_tokens or min(DEFAULT_MAX_OUTPUT_TOKENS, context_length // 2)
        return SamplingParams(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[InputMessage] = Field(default_factory=list, max_length=20)
    metadata: Metadata = None


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    metadata: RequiredMetadata


class ItemsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[InputMessage] = Field(min_length=1, max_length=20)


# ---- objects ----
def item_object(message: Message, status: str = "completed") -> dict:
    if message.role == "assistant":
        content = [{"type": "output_text", "text": message.text, "annotations": []}] if message.text or \
            status == "completed" else []
    else:
        content = [{"type": "input_text", "text": message.text}]
    return {"id": message.id, "type": "message", "status": status, "role": message.role, "content": content}


def list_object(items: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def conversation_object(row: dict) -> dict:
    return {"id": row["id"], "object": "conversation", "created_at": int(row["created_at"]),
            "metadata": row.get("metadata") or {}}


def response_usage(finished: Finished | None) -> dict | None:
    if finished is None:
        return None
    return {"input_tokens": finished.prompt_tokens, "input_tokens_details": {"cached_tokens": finished.cached_tokens},
            "output_tokens": finished.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": finished.prompt_tokens + finished.completion_tokens}


def response_object(request: ResponseRequest, response_id: str, created_at: float, *, status: str,
                    output: list[dict], finished: Finished | None = None, error: dict | None = None) -> dict:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    cid = request.conversation_id
    return {
        "id": response_id, "object": "response", "created_at": int(created_at), "status": status,
        "error": error, "incomplete_details": incomplete, "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens, "model": request.model, "output": output,
        "parallel_tool_calls": False, "previous_response_id": request.previous_response_id,
        "conversation": {"id": cid} if cid else None, "reasoning": None, "store": request.store,
        "temperature": request.temperature, "top_p": request.top_p, "text": {"format": {"type": "text"}},
        "tool_choice": "none", "tools": [], "truncation": request.truncation, "usage": response_usage(finished),
        "user": request.user, "metadata": request.metadata or {},
    }


def status_of(finished: Finished) -> str:
    return "incomplete" if finished.finish_reason == "length" else "completed"


# ---- documented shapes of the objects above (the OpenAPI document; tests hold the service to them) ----
class ContentObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["input_text", "output_text"]
    text: str


class ItemObject(BaseModel):
    id: str
    type: Literal["message"]
    status: str
    role: str
    content: list[ContentObject]


class ItemList(BaseModel):
    object: Literal["list"]
    data: list[ItemObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ConversationObject(BaseModel):
    id: str
    object: Literal["conversation"]
    created_at: int
    metadata: dict[str, str]


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"]
    deleted: bool


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class ResponseObject(BaseModel):
    model_config = ConfigDict(extra="allow")  # every field OpenAI documents, echoed from the request

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    error: dict | None
    model: str
    output: list[ItemObject]
    previous_response_id: str | None
    conversation: ConversationRef | None
    usage: dict | None
    metadata: dict[str, str]
