"""The stateful OpenAI surface (Responses and Conversations) and /sessions, on a real keyed server
process, driven by the official `openai` client. What is checked is what the service sends the
model and stores, not what a 135M-parameter model remembers."""

import time

import httpx
import openai
import pytest
from helpers import ServerProcess, wait_idle

KEY, OTHER_KEY = "sk-state-one", "sk-state-two"
GREEDY = {"temperature": 0, "max_output_tokens": 24}
WEATHER_TOOL = [{"type": "function", "name": "get_weather", "description": "Get the weather in a city",
                 "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                                "properties": {"city": {"type": "string", "maxLength": 24}}}}]


CONTEXT = 2048  # the context this module's server is started with: a short one fills in seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine_name):
    db = tmp_path_factory.mktemp(f"stateful-{engine_name}") / "c.sqlite3"
    process = ServerProcess("--api-key", KEY, "--api-key", OTHER_KEY, "--max-model-len", str(CONTEXT), db=db,
                            engine=engine_name).start()
    yield process
    process.stop()


def client_for(server, key=KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


def test_a_chain_of_three_turns_carries_the_earlier_turns_and_survives_a_restart(server):
    client = client_for(server)
    first = client.responses.create(model="demo", input="My name is Ada. Say hello.", **GREEDY)
    second = client.responses.create(model="demo", input="What is my name?", previous_response_id=first.id, **GREEDY)
    third = client.responses.create(model="demo", input="Say it again.", previous_response_id=second.id, **GREEDY)
    assert first.status in ("completed", "incomplete") and first.output_text
    assert third.previous_response_id == second.id
    # each prompt holds the whole turn before it (which holds the one before that)
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens
    items = client.responses.input_items.list(third.id, order="asc").data
    assert [(i.role, i.content[0].text) for i in items] == [
        ("user", "My name is Ada. Say hello."), ("assistant", first.output_text), ("user", "What is my name?"),
        ("assistant", second.output_text), ("user", "Say it again.")]
    stored = client.responses.retrieve(second.id)
    assert stored.output_text == second.output_text and stored.id == second.id
    # an agent's step: a function call, whose output comes back after the restart
    asked = client.responses.create(model="demo", input="What is the weather like in Paris?", tools=WEATHER_TOOL,
                                    tool_choice="required", previous_response_id=third.id, **GREEDY)
    (call,) = asked.output
    assert call.type == "function_call" and call.name == "get_weather"

    server.stop()
    server.start()
    again = client.responses.create(model="demo", input="And once more.", previous_response_id=third.id, **GREEDY)
    assert again.usage.input_tokens > third.usage.input_tokens + third.usage.output_tokens
    answer = client.responses.create(
        model="demo", previous_response_id=asked.id, tools=WEATHER_TOOL, **GREEDY,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny in Paris, 24 C."}])
    assert answer.status in ("completed", "incomplete") and answer.output_text
    items = client.responses.input_items.list(answer.id, order="asc").data
    assert [i.type for i in items][-3:] == ["message", "function_call", "function_call_output"]
    assert items[-2].call_id == call.call_id and items[-2].arguments == call.arguments
    assert answer.usage.input_tokens > asked.usage.input_tokens  # the call and its output are in the prompt


def test_a_conversation_through_responses_items_and_chat(server):
    client = client_for(server)
    conversation = client.conversations.create(metadata={"topic": "geography"})
    one = client.responses.create(model="demo", input="What is the capital of France?", conversation=conversation.id,
                                  **GREEDY)
    two = client.responses.create(model="demo", input="And of Spain?", conversation={"id": conversation.id}, **GREEDY)
    assert two.conversation.id == conversation.id
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.role for i in items] == ["user", "assistant", "user", "assistant"]
    assert items[0].content[0].text == "What is the capital of France?"
    assert items[1].content[0].text == one.output_text and items[3].content[0].text == two.output_text
    assert client.conversations.retrieve(conversation.id).metadata == {"topic": "geography"}

    # /chat with the same id sees the same history, and continues it
    headers = {"Authorization": f"Bearer {KEY}"}
    chat = httpx.post(server.url + "/chat", headers=headers, timeout=120,
                      json={"message": "Thanks!", "session_id": conversation.id, "temperature": 0, "max_tokens": 8})
    assert chat.status_code == 200
    assert chat.json()["usage"]["prompt_tokens"] > two.usage.input_tokens + two.usage.output_tokens
    session = httpx.get(server.url + f"/sessions/{conversation.id}", headers=headers).json()
    assert [m["content"] for m in session["messages"]][:2] == ["What is the capital of France?", one.output_text]
    assert len(session["messages"]) == 6

    client.conversations.items.delete(items[0].id, conversation_id=conversation.id)
    assert len(client.conversations.items.list(conversation.id).data) == 5
    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
    assert httpx.get(server.url + f"/sessions/{conversation.id}", headers=headers).status_code == 404


def test_streaming_yields_the_documented_events_and_the_same_response(server):
    client = client_for(server)
    # warm the prompt first (see test_request_sampling)
    client.responses.create(model="demo", input="Name three colors.", store=False, **GREEDY)
    plain = client.responses.create(model="demo", input="Name three colors.", store=False, **GREEDY)
    events = list(client.responses.create(model="demo", input="Name three colors.", stream=True, **GREEDY))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed" if plain.status == "completed" else "response.incomplete"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.output_text == plain.output_text == "".join(e.delta for e in events if e.type.endswith(".delta"))
    assert client.responses.retrieve(final.id).output_text == final.output_text
    with pytest.raises(openai.NotFoundError):  # store=False keeps nothing
        client.responses.retrieve(plain.id)
    # the SDK's stream helper reads the same events (its get_final_response() insists on
    # `response.completed`, and a greedy answer may run past max_output_tokens: `incomplete`)
    with client.responses.stream(model="demo", input="Name three colors.", **GREEDY) as stream:
        streamed = list(stream)
    assert streamed[-1].type == kinds[-1] and streamed[-1].response.output_text == plain.output_text


def test_another_key_cannot_read_continue_list_or_delete(server):
    mine, theirs = client_for(server), client_for(server, OTHER_KEY)
    response = mine.responses.create(model="demo", input="A secret: 4417.", **GREEDY)
    conversation = mine.conversations.create(items=[{"type": "message", "role": "user", "content": "secret 4417"}])
    for attempt in (lambda: theirs.responses.retrieve(response.id),
                    lambda: theirs.responses.delete(response.id),
                    lambda: theirs.responses.input_items.list(response.id),
                    lambda: theirs.responses.create(model="demo", input="go on", previous_response_id=response.id),
                    lambda: theirs.conversations.retrieve(conversation.id),
                    lambda: theirs.conversations.items.list(conversation.id),
                    lambda: theirs.conversations.delete(conversation.id),
                    lambda: theirs.responses.create(model="demo", input="go on", conversation=conversation.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()
    sessions = httpx.get(server.url + "/sessions", headers={"Authorization": f"Bearer {OTHER_KEY}"}).json()
    assert conversation.id not in [s["session_id"] for s in sessions["sessions"]]
    assert mine.conversations.items.list(conversation.id).data[0].content[0].text == "secret 4417"
    assert mine.responses.retrieve(response.id).id == response.id


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/responses", {"model": "demo"}),
    ("POST", "/v1/responses", {"model": "demo", "input": []}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "tools": [{"type": "web_search"}]}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "reasoning": {"effort": "high"}}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "text": {"format": {"type": "json_schema"}}}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "background": True}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "conversation": "c", "previous_response_id": "r"}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "max_output_tokens": 0}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "temperature": -1}),
    ("POST", "/v1/responses", {"model": "demo", "input": [{"role": "robot", "content": "hi"}]}),
    ("POST", "/v1/responses", {"model": "demo", "input": "word " * 9000, "max_output_tokens": 8}),
    ("POST", "/v1/responses", {"model": "demo", "input": "hi", "previous_response_id": "resp_missing"}),
    ("POST", "/v1/responses", {"model": "nope", "input": "hi"}),
    ("GET", "/v1/responses/resp_missing", None),
    ("DELETE", "/v1/responses/resp_missing", None),
    ("GET", "/v1/responses/resp_missing/input_items", None),
    ("POST", "/v1/conversations", {"items": "not a list"}),
    ("POST", "/v1/conversations", {"unknown": 1}),
    ("GET", "/v1/conversations/conv_missing", None),
    ("POST", "/v1/conversations/conv_missing", {"metadata": {}}),
    ("DELETE", "/v1/conversations/conv_missing", None),
    ("GET", "/v1/conversations/conv_missing/items?limit=500", None),
    ("POST", "/v1/conversations/conv_missing/items", {"items": []}),
    ("GET", "/v1/conversations/conv_missing/items/msg_missing", None),
    ("DELETE", "/v1/conversations/conv_missing/items/msg_missing", None),
])
def test_bad_input_is_a_clear_openai_error_and_stores_nothing(server, method, path, body):
    headers = {"Authorization": f"Bearer {KEY}"}
    before = httpx.get(server.url + "/sessions", headers=headers, params={"limit": 100}).json()
    response = httpx.request(method, server.url + path, json=body, headers=headers, timeout=60)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["message"] and error["type"]
    assert httpx.get(server.url + "/sessions", headers=headers, params={"limit": 100}).json() == before


@pytest.mark.parametrize("method, path", [
    ("GET", "/sessions/../../etc/passwd"), ("GET", "/sessions/" + "x" * 200), ("GET", "/sessions/nobody-here"),
    ("DELETE", "/sessions/nobody-here"), ("GET", "/sessions?limit=0"),
])
def test_bad_session_requests_are_clear_errors(server, method, path):
    response = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {KEY}"})
    assert 400 <= response.status_code < 500
    assert isinstance(response.json()["error"], str)


def test_truncation_disabled_refuses_and_auto_drops_the_oldest_rounds(server):
    client = client_for(server)
    long = "word " * 700  # about 700 tokens a turn: three turns overflow the server's 2,048
    first = client.responses.create(model="demo", input="one " + long, max_output_tokens=4, temperature=0)
    second = client.responses.create(model="demo", input="two " + long, max_output_tokens=4, temperature=0,
                                     previous_response_id=first.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="demo", input="three " + long, max_output_tokens=4, temperature=0,
                                previous_response_id=second.id)
    assert refused.value.code == "context_length_exceeded"
    third = client.responses.create(model="demo", input="three " + long, max_output_tokens=4, temperature=0,
                                    previous_response_id=second.id, truncation="auto")
    assert third.usage.input_tokens < second.usage.input_tokens + 350  # the first round (~700) was left out
    given = client.responses.input_items.list(third.id, order="asc", limit=100).data
    assert given[0].content[0].text.startswith("two ")  # and input_items says so


def test_a_client_that_disconnects_mid_stream_stores_nothing(server):
    client = client_for(server)
    conversation = client.conversations.create()
    with httpx.stream("POST", server.url + "/v1/responses", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                      json={"model": "demo", "input": "Count to five hundred.", "stream": True,
                            "conversation": conversation.id, "max_output_tokens": 400, "temperature": 0}) as r:
        for line in r.iter_lines():
            if "response.output_text.delta" in line:
                break
    for _ in range(50):  # the server notices the disconnect within a few decode steps
        status = httpx.get(server.url + "/status", headers={"Authorization": f"Bearer {KEY}"}).json()
        if status["running_requests"] == 0:
            break
        time.sleep(0.1)
    assert status["running_requests"] == 0
    assert client.conversations.items.list(conversation.id).data == []


def test_reset_empties_a_conversation(server):
    client = client_for(server)
    conversation = client.conversations.create(items=[{"role": "user", "content": "remember 12"}])
    reset = httpx.post(server.url + "/reset", headers={"Authorization": f"Bearer {KEY}"},
                       json={"session_id": conversation.id})
    assert reset.json()["rounds_removed"] == 1
    assert client.conversations.items.list(conversation.id).data == []


def test_after_the_window_drops_rounds_the_next_turn_finds_its_beginning_cached(server, engine_name):
    """The 21st round drops the oldest 10, and the next prompt begins anew; the service has the
    engine prefill that beginning in the background (vLLM: a one-token request that leaves it in
    its prefix cache), so a turn after a pause prefills little more than its own message."""
    if engine_name == "transformers":
        pytest.skip("the transformers engine keeps no cache between requests: nothing to warm")
    headers = {"Authorization": f"Bearer {KEY}"}

    def chat(n: int) -> dict:
        response = httpx.post(server.url + "/chat", headers=headers, timeout=120, json={
            "message": f"Round {n}: name a colour.", "session_id": "window-warm", "temperature": 0,
            "max_tokens": 4})
        assert response.status_code == 200, response.text
        return response.json()["usage"]

    usages = [chat(n) for n in range(21)]  # storing the 21st round drops the oldest 10
    block = wait_idle(server.url, headers).get("kv_block_size") or 1  # vLLM caches whole blocks
    after = chat(21)
    assert after["prompt_tokens"] < usages[-1]["prompt_tokens"] - 100  # the window dropped 10 rounds
    assert after["cached_tokens"] >= after["prompt_tokens"] - 20 - block, after  # all but the new message
