"""Function tools as OpenAI's chat completions spell them: the definitions and `tool_choice` a
request sends, and the calls a reply carries (whole, and streamed). Built-in tools (web search,
file search, ...) are not function tools and stay a 400."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pure_model_api.engine import EMPTY_PARAMETERS, Tool, ToolRequest
from pure_model_api.engine.params import ToolCall, ToolCallDelta
from pure_model_api.errors import BadRequest
from pure_model_api.protocol.reply import Reply
from pure_model_api.protocol.structured import NAME, enforceable

MAX_TOOLS = 128  # as OpenAI's limit on `tools`
MAX_ARGUMENTS = 1_000_000


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str = Field(pattern=NAME)
    description: str | None = None
    parameters: dict | None = None  # a JSON schema; none: no arguments
    strict: bool | None = None  # the arguments match the schema whether or not it is set


class FunctionTool(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["function"]
    function: NamedFunction


def tool_request(functions: list, choice: str | None, parallel: bool, structured: bool,
                 format_param: str = "response_format") -> ToolRequest | None:
    """The request's tools for the engine (each with `name`, `description`, `parameters`), each
    schema compiled once to check it; None without tools."""
    if not functions:
        if choice not in (None, "none"):
            raise BadRequest("tool_choice needs tools", param="tool_choice")
        return None
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise BadRequest("two tools have the same name", param="tools")
    if choice not in (None, "auto", "none", "required") and choice not in names:
        raise BadRequest(f"tool_choice names '{choice}', which is not among the tools", param="tool_choice")
    if structured and choice != "none":
        raise BadRequest(f"{format_param} with tools is not supported: a reply is either calls or the format",
                         param=format_param)
    tools = tuple(Tool(f.name, f.description or "",
                       enforceable(f.parameters, "tools") if f.parameters is not None else EMPTY_PARAMETERS)
                  for f in functions)
    return ToolRequest(tools, choice or "auto", parallel)


# ---- the calls in a reply ----
class FunctionCallObject(Reply):
    name: str
    arguments: str


class ToolCallObject(Reply):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallObject

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallObject:
        return cls(id=call.id, function=FunctionCallObject(name=call.name, arguments=call.arguments))


class FunctionCallChunk(BaseModel):
    """A streamed piece of a call: fields not in this piece are left out, not null."""

    name: str | None = None
    arguments: str | None = None


class ToolCallChunk(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallChunk

    @classmethod
    def of(cls, delta: ToolCallDelta) -> ToolCallChunk:
        opening = delta.id is not None
        return cls(index=delta.index, id=delta.id, type="function" if opening else None,
                   function=FunctionCallChunk(name=delta.name, arguments=delta.arguments if not opening else ""))

    def shown(self) -> dict:
        return self.model_dump(exclude_none=True)
