"""Structured outputs on both OpenAI surfaces, in-process on the tiny random models: whatever such a
model wants to write, a reply with a JSON schema parses and matches it; a schema that cannot be
enforced is a 400 naming the field, and nothing is stored."""

import json

import jsonschema

SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["city", "population", "sunny"],
    "properties": {"city": {"type": "string", "maxLength": 16},
                   "population": {"type": "integer", "minimum": 0, "maximum": 99999999},
                   "sunny": {"type": "boolean"}},
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}


def complete(client, **fields):
    body = {"model": client.app.state.settings.model, "messages": [{"role": "user", "content": "A city, as JSON."}],
            "max_tokens": 200, **fields}
    return client.post("/v1/chat/completions", json=body)


def test_a_chat_completion_with_a_json_schema_matches_it_sampled_or_greedy(client):
    for temperature in (0, 1.0):
        answer = complete(client, response_format=FORMAT, temperature=temperature, seed=7)
        assert answer.status_code == 200, answer.text
        choice = answer.json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)


def test_a_streamed_chat_completion_with_a_json_schema_matches_it(client):
    with client.stream("POST", "/v1/chat/completions", json={
            "model": client.app.state.settings.model, "messages": [{"role": "user", "content": "A city."}],
            "max_tokens": 200, "stream": True, "response_format": FORMAT}) as stream:
        lines = [line.removeprefix("data: ") for line in stream.iter_lines() if line.startswith("data: {")]
    text = "".join(json.loads(line)["choices"][0]["delta"].get("content") or "" for line in lines if
                   json.loads(line)["choices"])
    jsonschema.validate(json.loads(text), SCHEMA)


def test_a_stored_response_with_a_text_format_matches_it_and_echoes_the_format(client):
    model = client.app.state.settings.model
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    text_format = {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}
    first = client.post("/v1/responses", json={"model": model, "input": "A city.", "conversation": conversation,
                                                "text": {"format": text_format}, "max_output_tokens": 200})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["text"]["format"] == text_format
    reply = body["output"][0]["content"][0]["text"]
    jsonschema.validate(json.loads(reply), SCHEMA)
    items = client.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"}).json()["data"]
    assert items[-1]["content"][0]["text"] == reply
    plain = client.post("/v1/responses", json={"model": model, "input": "Thanks.", "conversation": conversation,
                                                "max_output_tokens": 2})
    assert plain.status_code == 200 and plain.json()["text"] == {"format": {"type": "text"}}


BAD = {
    "an unknown type": ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}},
                        "strin"),
    "a reference to nothing": ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/no"}}},
                               "/$defs/no"),
    "a broken pattern": ({"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string", "pattern": "(a"}}}, "unclosed group"),
    "no schema for json_schema": ({"type": "json_schema"}, "json_schema"),
    "an unknown format": ({"type": "xml"}, "'json_schema'"),
}


def test_a_schema_that_cannot_be_enforced_is_a_400_naming_the_field(client):
    for name, (response_format, words) in BAD.items():
        for stream in (False, True):
            answer = complete(client, response_format=response_format, stream=stream)
            assert answer.status_code == 400, (name, answer.text)
            error = answer.json()["error"]
            assert error["param"].startswith("response_format") and words in error["message"], (name, error)


def test_a_bad_text_format_is_a_400_and_the_conversation_keeps_what_it_had(client):
    model = client.app.state.settings.model
    conversation = client.post("/v1/conversations", json={"items": [
        {"type": "message", "role": "user", "content": "kept"}]}).json()["id"]
    for text_format, param in (({"type": "json_schema", "name": "x", "schema": {"type": "strin"}}, "text"),
                               ({"type": "json_schema", "schema": {"type": "object"}}, "text"),
                               ({"type": "text", "schema": {"type": "object"}}, "text")):
        answer = client.post("/v1/responses", json={"model": model, "input": "A city.", "conversation": conversation,
                                                    "text": {"format": text_format}})
        assert answer.status_code == 400 and answer.json()["error"]["param"].startswith(param), answer.text
    items = client.get(f"/v1/conversations/{conversation}/items").json()["data"]
    assert [item["content"][0]["text"] for item in items] == ["kept"]



def test_a_schema_no_value_matches_is_a_400_and_the_engine_serves_on(client):
    nothing = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}}}
    answer = complete(client, response_format=nothing)
    assert answer.status_code == 400 and "no value matches" in answer.json()["error"]["message"], answer.text
    assert complete(client, response_format=FORMAT).status_code == 200
