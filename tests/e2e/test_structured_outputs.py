"""Structured outputs on the demo model through a real server, on every engine, as the `openai` SDK
asks for them: `response_format` (a Pydantic model through `.parse`, a raw JSON schema, streamed,
any JSON object) and the Responses API's `text.format`, stored and continued."""

import json
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

QUESTION = "Describe Paris as JSON: the city's name, its country and how many people live there."


class City(BaseModel):
    name: str = Field(max_length=24)
    country: Literal["France", "Germany", "Italy", "Spain"]
    population: int = Field(ge=0, le=99_999_999)


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "country"],
          "properties": {"name": {"type": "string", "maxLength": 24},
                         "country": {"type": "string", "enum": ["France", "Germany", "Italy", "Spain"]}}}


@pytest.fixture(scope="module")
def client(openai_server):
    return openai.OpenAI(base_url=openai_server.url + "/v1", api_key="none", max_retries=0)


def ask(**fields) -> dict:
    return {"model": "demo", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 80,
            "temperature": 0, **fields}


def test_the_sdk_parses_a_pydantic_model_from_the_reply(client):
    completion = client.chat.completions.parse(**ask(), response_format=City)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, City)


def test_a_raw_schema_plain_and_streamed(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}
    whole = client.chat.completions.create(**ask(response_format=response_format)).choices[0].message.content
    jsonschema.validate(json.loads(whole), SCHEMA)
    chunks = client.chat.completions.create(**ask(response_format=response_format, stream=True, temperature=1.0))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(streamed), SCHEMA)


def test_json_object_mode_gives_a_json_object(client):
    # room to finish: a greedy reply on llama.cpp depends on where the server's earlier traffic left
    # the KV cells, and one run's object ran past 120 tokens
    reply = client.chat.completions.create(**ask(response_format={"type": "json_object"}, max_tokens=400))
    assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_a_response_with_a_text_format_is_stored_and_the_chain_goes_on(client):
    text = {"format": {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}}
    first = client.responses.create(model="demo", input=QUESTION, text=text, temperature=0, max_output_tokens=80)
    assert first.status == "completed" and first.text.format.type == "json_schema"
    jsonschema.validate(json.loads(first.output_text), SCHEMA)
    parsed = client.responses.parse(model="demo", input="And Rome?", previous_response_id=first.id,
                                    text_format=City, temperature=0, max_output_tokens=80)
    assert isinstance(parsed.output_parsed, City)
    history = client.responses.input_items.list(parsed.id, order="asc").data
    assert [item.content[0].text for item in history] == [QUESTION, first.output_text, "And Rome?"]


def test_a_schema_the_grammar_cannot_take_is_a_400(client):
    bad = {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "object", "properties": {
        "code": {"type": "string", "pattern": "[a-"}}}}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**ask(response_format=bad))
    assert refused.value.body["param"] == "response_format"
