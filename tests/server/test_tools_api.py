"""Tool calls on /v1/chat/completions, in-process on the tiny random models: whatever such a model
wants, a forced call comes back in OpenAI's shape with arguments that parse and match the tool's
schema, streamed in pieces that add up to the same call; a call and its result go back in; bad tool
input is a 400 naming the field."""

import json

import jsonschema
import pytest

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "days"],
           "properties": {"city": {"type": "string", "maxLength": 16},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "A city's forecast",
                                           "parameters": WEATHER, "strict": True}},
         {"type": "function", "function": {"name": "get_time", "description": "The time now"}}]
ASK = [{"role": "user", "content": "What is the weather in Lyon?"}]


def complete(client, **fields):
    body = {"model": client.app.state.settings.model, "messages": ASK, "max_tokens": 100, "tools": TOOLS, **fields}
    return client.post("/v1/chat/completions", json=body)


def only_call(answer) -> dict:
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    return call


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_a_forced_call_comes_back_parsed_and_matching_its_schema(client, temperature):
    named = {"type": "function", "function": {"name": "get_weather"}}
    for seed in range(3):
        call = only_call(complete(client, tool_choice=named, temperature=temperature, seed=seed))
        assert call["function"]["name"] == "get_weather"
        jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER)
        call = only_call(complete(client, tool_choice="required", temperature=temperature, seed=seed))
        assert call["function"]["name"] in ("get_weather", "get_time")
        assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_a_streamed_call_adds_up_to_the_same_call(client):
    whole = only_call(complete(client, tool_choice="required", temperature=0))
    with client.stream("POST", "/v1/chat/completions", json={
            "model": client.app.state.settings.model, "messages": ASK, "max_tokens": 100, "tools": TOOLS,
            "tool_choice": "required", "temperature": 0, "stream": True}) as stream:
        chunks = [json.loads(line.removeprefix("data: ")) for line in stream.iter_lines()
                  if line.startswith("data: {")]
    pieces = [piece for chunk in chunks for piece in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert pieces[0]["id"].startswith("call_") and pieces[0]["function"]["name"] == whole["function"]["name"]
    assert all("id" not in piece and "name" not in piece["function"] for piece in pieces[1:])
    assert {piece["index"] for piece in pieces} == {0}
    assert "".join(piece["function"]["arguments"] for piece in pieces) == whole["function"]["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_call_and_its_result_go_back_in(client):
    call = only_call(complete(client, tool_choice="required", temperature=0))
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 24 C"}]
    first = complete(client, messages=history, tool_choice="none", temperature=0, max_tokens=5)
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["tool_calls"] is None
    longer = history + [{"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 24 C, wind 10 km/h, dry"}]
    second = complete(client, messages=longer, tool_choice="none", temperature=0, max_tokens=5)
    assert second.json()["usage"]["prompt_tokens"] > first.json()["usage"]["prompt_tokens"]  # the result is read


def test_auto_gives_text_or_well_formed_calls(client):
    for seed in range(4):
        answer = complete(client, tool_choice="auto", temperature=1.0, seed=seed)
        assert answer.status_code == 200, answer.text
        choice = answer.json()["choices"][0]
        for call in choice["message"]["tool_calls"] or []:
            arguments = json.loads(call["function"]["arguments"])
            if call["function"]["name"] == "get_weather":
                jsonschema.validate(arguments, WEATHER)
        assert choice["message"]["tool_calls"] or choice["finish_reason"] in ("stop", "length")


BAD = [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "minProperties": 9,
                                                                                "maxProperties": 1}}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"tools": [{"type": "web_search"}]}, "tools"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_wether"}}}, "tool_choice"),
    ({"tools": None, "tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS + TOOLS[:1]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": ASK + [{"role": "tool", "content": "24 C"}]}, "messages"),
    ({"messages": ASK + [{"role": "user", "content": "x", "tool_call_id": "call_1"}]}, "messages"),
    ({"messages": ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": 5}}]}]}, "messages"),
]


@pytest.mark.parametrize(("fields", "param"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_tool_input_is_a_400_naming_the_field(client, fields, param):
    answer = complete(client, **fields)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"] or "").split(".")[0] == param, error
