"""Qwen2.5 and Llama 3.1 prompt formats through every engine, on real servers: tiny random-weight
models with the families' real tokenizers and templates (tests/family_models.py), as Hugging Face
directories on transformers and vLLM and as GGUF files of the same weights on llama.cpp.

What they say is noise; what is asserted is what a caller of a real Qwen or Llama model relies on:
the tools reach the prompt exactly as the family's template writes them (the server's prompt has as
many tokens as the template's rendering, here, with the family's tokenizer), a forced call comes
back in OpenAI's shape with arguments that parse and match the schema, plain and streamed alike,
and the call with its result goes back in as the template writes it."""

import json

import httpx
import jsonschema
import pytest
from family_models import FAMILIES, family_model
from helpers import ServerProcess, sse_events

from pure_model_api.engine.prompts import ChatRenderer
from pure_model_api.engine.tools import Tool, ToolRequest, detect_format, template_messages

pytestmark = pytest.mark.slow

FORECAST = {"type": "object", "additionalProperties": False, "required": ["city", "days"],
            "properties": {"city": {"type": "string", "maxLength": 12},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The forecast for a city",
                                           "parameters": FORECAST}},
         {"type": "function", "function": {"name": "get_time", "description": "The time in a city",
                                           "parameters": {"type": "object", "properties": {}}}}]
QUESTION = [{"role": "system", "content": "You plan trips."}, {"role": "user", "content": "Weather in Lyon?"}]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_server(request, engine_name, tmp_path_factory):
    if engine_name == "vllm" and request.param == "llama":
        # vLLM renders nothing itself (the service's HF path does, which transformers covers for both
        # families); Qwen's hermes format, with its stop string, is the one vLLM's decoding meets
        # differently. A second vLLM start costs a minute of the suite.
        pytest.skip("on vLLM, the Qwen family only")
    model = family_model(request.param)
    path = model.gguf if engine_name == "llama.cpp" else model.hf_dir
    db = tmp_path_factory.mktemp(f"family-{request.param}-{engine_name}") / "conversations.sqlite3"
    server = ServerProcess("--model", str(path), db=db, engine=engine_name).start()
    server.model = model
    server.model_id = httpx.get(server.url + "/v1/models").json()["data"][0]["id"]
    yield server
    server.stop()


def expected_prompt_tokens(model, messages: list[dict], tools: list[dict] | None) -> int:
    """The template's own rendering, with the family's tokenizer, counted here."""
    from transformers import AutoTokenizer

    renderer = ChatRenderer(AutoTokenizer.from_pretrained(model.hf_dir))
    request = ToolRequest(tuple(Tool(t["function"]["name"], t["function"]["description"],
                                     json.dumps(t["function"]["parameters"])) for t in tools)) if tools else None
    shown, definitions = template_messages(detect_format(renderer), messages, request)
    return len(renderer.render(shown, definitions))


def complete(server, messages, **fields) -> dict:
    body = {"model": server.model_id, "messages": messages, "max_tokens": 24, "temperature": 0, **fields}
    response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_tools_reach_the_prompt_as_the_family_template_writes_them(family_server):
    bare = complete(family_server, QUESTION, max_tokens=1)
    with_tools = complete(family_server, QUESTION, max_tokens=1, tools=TOOLS, tool_choice="none")
    assert bare["usage"]["prompt_tokens"] == expected_prompt_tokens(family_server.model, QUESTION, None)
    assert with_tools["usage"]["prompt_tokens"] == expected_prompt_tokens(family_server.model, QUESTION, TOOLS)
    assert with_tools["usage"]["prompt_tokens"] > bare["usage"]["prompt_tokens"] + 40  # the definitions


def test_a_forced_call_parses_plain_and_streamed_and_its_result_goes_back_in(family_server):
    named = {"type": "function", "function": {"name": "get_weather"}}
    reply = complete(family_server, QUESTION, tools=TOOLS, tool_choice=named)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), FORECAST)

    body = {"model": family_server.model_id, "messages": QUESTION, "max_tokens": 24, "temperature": 0,
            "tools": TOOLS, "tool_choice": named, "stream": True}
    with httpx.stream("POST", family_server.url + "/v1/chat/completions", json=body, timeout=300) as response:
        chunks = [data for _, data in sse_events(response) if data != "[DONE]"]
    pieces = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
    assert pieces[0]["function"]["name"] == "get_weather" and pieces[0]["id"].startswith("call_")
    assert "".join(p["function"].get("arguments") or "" for p in pieces) == call["function"]["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    turn = QUESTION + [choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 24 C"}]
    answer = complete(family_server, turn, max_tokens=1, tools=TOOLS, tool_choice="none")
    sent = [*QUESTION, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 24 C"}]
    assert answer["usage"]["prompt_tokens"] == expected_prompt_tokens(family_server.model, sent, TOOLS)


def test_auto_gives_text_or_well_formed_calls(family_server):
    """What a random model does with `auto` is its own affair; what comes back is one shape or the other."""
    for seed in range(3):
        choice = complete(family_server, QUESTION, tools=TOOLS, tool_choice="auto", temperature=1.0, seed=seed,
                          max_tokens=40)["choices"][0]
        calls = choice["message"].get("tool_calls") or []
        assert choice["finish_reason"] == ("tool_calls" if calls else "length") or choice["finish_reason"] == "stop"
        for call in calls:
            arguments = json.loads(call["function"]["arguments"])
            if call["function"]["name"] == "get_weather":
                jsonschema.validate(arguments, FORECAST)
