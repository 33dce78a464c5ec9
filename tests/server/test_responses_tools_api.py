"""Function calls on the Responses and Conversations APIs, in-process on the tiny random models:
a call is an output item that parses and matches its tool's schema, stored with the response and in
the conversation; its output goes back in by previous_response_id or by the conversation, and the
chain's items list them in order; a result for a call that is not there is a 400 that stores
nothing; an agent's tool loop keeps its prompt's beginning from step to step."""

import json

import jsonschema
from test_prompt_prefix import record_prompts

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city"],
           "properties": {"city": {"type": "string", "maxLength": 16}}}
TOOLS = [{"type": "function", "name": "get_weather", "description": "A city's forecast", "parameters": WEATHER}]


def respond(client, **fields):
    body = {"model": client.app.state.settings.model, "input": "Weather in Lyon?", "max_output_tokens": 60,
            "tools": TOOLS, "tool_choice": "required", "temperature": 0, **fields}
    return client.post("/v1/responses", json=body)


def the_call(answer) -> dict:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "completed"
    (item,) = body["output"]
    assert item["type"] == "function_call" and item["status"] == "completed"
    assert item["call_id"].startswith("call_") and item["id"].startswith("fc_")
    jsonschema.validate(json.loads(item["arguments"]), WEATHER)
    return item


def result(call: dict, output: str = "Sunny, 24 C") -> list[dict]:
    return [{"type": "function_call_output", "call_id": call["call_id"], "output": output}]


def test_a_call_and_its_output_by_previous_response_id(client):
    first = respond(client)
    call = the_call(first)
    stored = client.get(f"/v1/responses/{first.json()['id']}").json()
    assert stored["output"] == [call] and stored["tools"] == TOOLS and stored["tool_choice"] == "required"
    second = respond(client, previous_response_id=first.json()["id"], input=result(call), tool_choice="none",
                     max_output_tokens=5)
    assert second.status_code == 200, second.text
    assert [o["type"] for o in second.json()["output"]] == ["message"]
    items = client.get(f"/v1/responses/{second.json()['id']}/input_items", params={"order": "asc"}).json()["data"]
    assert [i["type"] for i in items] == ["message", "function_call", "function_call_output"]
    assert items[1] == call and items[2]["call_id"] == call["call_id"] and items[2]["output"] == "Sunny, 24 C"


def test_a_call_and_its_output_in_a_conversation(client):
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    call = the_call(respond(client, conversation=conversation))
    answer = respond(client, conversation=conversation, input=result(call), tool_choice="auto")
    assert answer.status_code == 200, answer.text
    items = client.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"}).json()["data"]
    assert [i["type"] for i in items][:3] == ["message", "function_call", "function_call_output"]
    one = client.get(f"/v1/conversations/{conversation}/items/{call['id']}").json()
    assert one == call


def test_a_result_for_no_call_is_a_400_and_stores_nothing(client):
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    the_call(respond(client, conversation=conversation))
    before = client.get(f"/v1/conversations/{conversation}/items").json()["data"]
    wrong = respond(client, conversation=conversation, input=result({"call_id": "call_nothere"}))
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "input"
    added = client.post(f"/v1/conversations/{conversation}/items", json={"items": result({"call_id": "call_x"})})
    assert added.status_code == 400 and added.json()["error"]["param"] == "items"
    assert client.get(f"/v1/conversations/{conversation}/items").json()["data"] == before
    chained = respond(client, previous_response_id=respond(client).json()["id"], input=result({"call_id": "call_y"}))
    assert chained.status_code == 400 and chained.json()["error"]["param"] == "input"


def test_built_in_tools_are_a_400_naming_the_type(client):
    for tool in ({"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                 {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "mcp", "server_label": "x"}):
        answer = respond(client, tools=[tool], tool_choice="auto")
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "tools" and tool["type"] in answer.json()["error"]["message"]


def test_a_streamed_call_adds_up_to_the_stored_one(client):
    with client.stream("POST", "/v1/responses", json={
            "model": client.app.state.settings.model, "input": "Weather in Lyon?", "max_output_tokens": 60,
            "tools": TOOLS, "tool_choice": "required", "temperature": 0, "stream": True}) as stream:
        events = [json.loads(line.removeprefix("data: ")) for line in stream.iter_lines()
                  if line.startswith("data: {")]
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    added = events[2]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress" and added["name"] == "get_weather"
    pieces = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    final = events[-1]["response"]["output"][0]
    assert pieces == final["arguments"] == events[-3]["arguments"] and final["call_id"] == added["call_id"]
    stored = client.get(f"/v1/responses/{events[-1]['response']['id']}").json()
    assert stored["output"] == [final]


def test_an_agent_loop_keeps_its_prompt_beginning(client):
    """Each step's prompt begins with the step before's: the calls and results of earlier steps are
    not prefilled again by an engine with a prefix cache. (A forced call with one tool is one
    generation, its prompt ending in the call's opening, which the service writes.)"""
    engine = client.app.state.service.engine
    fmt = engine.tool_format
    opening = engine.prompts.encode(fmt.opening) + engine.prompts.encode_plain('"get_weather"') + \
        engine.prompts.encode(fmt.middle)
    prompts = record_prompts(client)
    conversation = client.post("/v1/conversations", json={}).json()["id"]
    call = the_call(respond(client, conversation=conversation))
    for step in range(4):
        call = the_call(respond(client, conversation=conversation, input=result(call, f"Sunny, {20 + step} C")))
    assert len(prompts) == 5 and all(p[-len(opening):] == opening for p in prompts)
    steps = [p[:-len(opening)] for p in prompts]
    for before, after in zip(steps, steps[1:]):
        assert len(after) > len(before) and after[:len(before)] == before


def test_a_conversation_made_with_a_call_and_its_result(client):
    call = {"type": "function_call", "call_id": "call_made", "name": "get_weather", "arguments": '{"city":"Nice"}'}
    made = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "Weather in Nice?"}, call,
                                                             *result(call)]})
    assert made.status_code == 200, made.text
    items = client.get(f"/v1/conversations/{made.json()['id']}/items", params={"order": "asc"}).json()["data"]
    assert [i["type"] for i in items] == ["message", "function_call", "function_call_output"]
    assert items[1]["arguments"] == call["arguments"] and items[2]["call_id"] == "call_made"
    stray = client.post("/v1/conversations", json={"items": result({"call_id": "call_nowhere"})})
    assert stray.status_code == 400 and stray.json()["error"]["param"] == "items"
