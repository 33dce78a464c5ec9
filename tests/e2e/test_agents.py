"""Tool calls on the demo model through a real server, on every engine, as agents' clients make
them: the `openai` SDK (a forced call, streamed, its result sent back), the OpenAI Agents SDK's
chat-completions model running a function tool, and LangChain's `bind_tools`. A forced tool choice
makes a 135M model's calls deterministic enough to test; what it does with `auto` is its own."""

import asyncio
import json

import openai
import pytest

FORECAST = {"type": "object", "additionalProperties": False, "required": ["city"],
            "properties": {"city": {"type": "string", "maxLength": 24}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city",
                                           "parameters": FORECAST}}]
QUESTION = "What is the weather like in Paris?"


@pytest.fixture(scope="module")
def client(openai_server):
    return openai.OpenAI(base_url=openai_server.url + "/v1", api_key="none", max_retries=0)


def ask(**fields) -> dict:
    return {"model": "demo", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 60,
            "temperature": 0, "tools": TOOLS, "tool_choice": "required", **fields}


def test_a_forced_call_plain_and_streamed_then_its_result(client):
    choice = client.chat.completions.create(**ask()).choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    pieces, finish = [], None
    for chunk in client.chat.completions.create(**ask(temperature=0.8, seed=3), stream=True):
        for piece in chunk.choices[0].delta.tool_calls or []:
            pieces.append(piece)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and pieces[0].id.startswith("call_")
    assert isinstance(json.loads("".join(p.function.arguments or "" for p in pieces))["city"], str)

    history = [{"role": "user", "content": QUESTION}, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "Sunny and 24 degrees."}]
    answer = client.chat.completions.create(**ask(messages=history, tool_choice="none")).choices[0]
    assert answer.message.tool_calls is None and answer.message.content


def weather_agent(openai_server, model_class: str, **settings):
    """An Agents SDK agent on the service, with a weather tool that notes each city it is asked for."""
    import agents

    agents.set_tracing_disabled(True)
    asked = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        asked.append(city)
        return f"It is sunny in {city}."

    model = getattr(agents, model_class)(model="demo", openai_client=openai.AsyncOpenAI(
        base_url=openai_server.url + "/v1", api_key="none", max_retries=0))
    agent = agents.Agent(name="weather", instructions="Answer with the weather tool.", model=model,
                         tools=[get_weather], **settings,
                         model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=60))
    return agent, asked


def test_the_agents_sdk_runs_a_function_tool(openai_server):
    from agents import Runner

    agent, asked = weather_agent(openai_server, "OpenAIChatCompletionsModel", tool_use_behavior="stop_on_first_tool")
    result = asyncio.run(Runner.run(agent, QUESTION))
    assert len(asked) == 1 and result.final_output == f"It is sunny in {asked[0]}."


def test_langchain_bind_tools(openai_server):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return f"It is sunny in {city}."

    chat = ChatOpenAI(model="demo", base_url=openai_server.url + "/v1", api_key="none", temperature=0,
                      max_tokens=60, max_retries=0)
    # strict: the schema LangChain writes gets additionalProperties false, so the arguments end
    message = chat.bind_tools([get_weather], tool_choice="get_weather", strict=True).invoke(QUESTION)
    assert len(message.tool_calls) == 1, message
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert get_weather.invoke(call["args"]).startswith("It is sunny in")


def test_the_agents_sdk_responses_model_runs_a_function_tool(openai_server):
    from agents import Runner

    agent, asked = weather_agent(openai_server, "OpenAIResponsesModel")
    # The SDK resets tool_choice to auto after a call; the 135M model then answers in text.
    result = asyncio.run(Runner.run(agent, QUESTION, max_turns=4))
    assert len(asked) >= 1 and isinstance(result.final_output, str)
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert calls and outputs and outputs[0].output == f"It is sunny in {asked[0]}."
