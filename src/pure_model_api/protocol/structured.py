"""Structured outputs as both OpenAI surfaces spell them: `response_format` on chat completions,
`text.format` on the Responses API. Each comes down to one JSON schema for the engine
(`SamplingParams.json_schema`), which enforces it by constrained decoding (engine/structured.py).
A schema that cannot be enforced is a 400 naming the field, before any work is done."""

from __future__ import annotations

import json
from typing import Literal

import llguidance
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from pure_model_api.errors import BadRequest

ANY_OBJECT = {"type": "object"}  # json_object: any JSON object
NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Echoed(BaseModel):
    """Echoed in a response object as OpenAI shows it: the fields that are set, no nulls."""

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler):
        return {name: value for name, value in handler(self).items() if value is not None}


def enforceable(schema: dict, param: str) -> str:
    """The schema as JSON text, once llguidance (the library every engine enforces it with) has
    compiled it; linear in the schema's size."""
    text = json.dumps(schema)
    try:
        error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_json_schema(text))
    except ValueError as failure:
        error = str(failure)
    if error:
        raise BadRequest(f"the JSON schema cannot be enforced: {error}", param=param)
    return text


class JsonSchema(BaseModel):
    """`response_format.json_schema`. The schema is enforced whether or not `strict` is set."""

    model_config = ConfigDict(strict=True, populate_by_name=True, serialize_by_alias=True)

    name: str = Field(pattern=NAME)
    description: str | None = None
    schema_: dict = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """Chat completions' `response_format`: text, any JSON object, or JSON matching a schema."""

    model_config = ConfigDict(strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is given with type 'json_schema', and only then")
        return self

    def schema_text(self) -> str | None:
        if self.type == "text":
            return None
        schema = ANY_OBJECT if self.type == "json_object" else self.json_schema.schema_
        return enforceable(schema, "response_format")


class TextFormat(_Echoed):
    """The Responses API's `text.format`: the same three kinds, the schema's fields inline."""

    model_config = ConfigDict(strict=True, populate_by_name=True, serialize_by_alias=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(None, pattern=NAME)
    description: str | None = None
    schema_: dict | None = Field(None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> TextFormat:
        if self.type == "json_schema" and (self.schema_ is None or self.name is None):
            raise ValueError("a json_schema format needs its name and schema")
        if self.type != "json_schema" and self.schema_ is not None:
            raise ValueError("schema is given with type 'json_schema' only")
        return self

    def schema_text(self) -> str | None:
        if self.type == "text":
            return None
        return enforceable(ANY_OBJECT if self.type == "json_object" else self.schema_, "text.format")


class TextOptions(_Echoed):
    """The Responses API's `text`."""

    model_config = ConfigDict(strict=True)

    format: TextFormat = TextFormat()
    verbosity: Literal["low", "medium", "high"] | None = None  # accepted; a model here has no such knob
