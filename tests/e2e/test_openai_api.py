"""The OpenAI-compatible API, API keys, CORS and metrics, on a real keyed server process,
driven by the official `openai` client."""

import asyncio
import time

import httpx
import openai
import pytest
from helpers import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

KEY, OTHER_KEY = "sk-test-one", "sk-test-two"
ORIGIN = "http://app.example.test"
QUESTION = "Tell me the capital of France."


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, engine_name):
    db = tmp_path_factory.mktemp(f"keyed-{engine_name}") / "c.sqlite3"
    # keys from the environment, as a comma list (flags are covered in tests/unit/test_config.py)
    server = ServerProcess("--served-model-name", "smol", "--cors-origins", ORIGIN, engine=engine_name,
                           db=db, env={"PURE_API_API_KEY": f"{KEY},{OTHER_KEY}"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(keyed_server):
    return openai.OpenAI(base_url=keyed_server.url + "/v1", api_key=KEY, max_retries=0)


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def test_models_list_and_lookup(client):
    assert {m.id for m in client.models.list().data} == {"demo", "smol"}
    assert client.models.retrieve("smol").id == "smol"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_greedy_completion_equals_the_chat_reply(client, keyed_server):
    completion = client.chat.completions.create(model="demo", temperature=0, max_tokens=32,
                                                messages=[{"role": "user", "content": QUESTION}])
    chat = httpx.post(keyed_server.url + "/chat", headers=auth(), timeout=60,
                      json={"message": QUESTION, "temperature": 0, "max_tokens": 32, "session_id": "vs-openai"}).json()
    assert completion.choices[0].message.content == chat["response"]
    assert "Paris" in completion.choices[0].message.content
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage.prompt_tokens == chat["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens == chat["usage"]["completion_tokens"]
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.object == "chat.completion" and completion.model == "demo"


def test_streaming_chat_matches_and_reports_usage(client):
    messages = [{"role": "system", "content": "You answer in one sentence."},
                {"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    whole = client.chat.completions.create(model="smol", temperature=0, max_tokens=24, messages=messages)
    chunks = list(client.chat.completions.create(model="smol", temperature=0, max_tokens=24, messages=messages,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_multi_turn_history_is_the_clients(client):
    reply = client.chat.completions.create(model="demo", temperature=0, max_tokens=24, messages=[
        {"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "What did I just ask?"}])
    assert "France" in reply.choices[0].message.content


def test_stop_strings(client):
    completion = client.chat.completions.create(model="demo", temperature=0, max_tokens=32, stop=["Paris"],
                                                messages=[{"role": "user", "content": QUESTION}])
    assert completion.choices[0].finish_reason == "stop"
    assert "Paris" not in completion.choices[0].message.content
    assert completion.choices[0].message.content.startswith("The capital of France is")


def test_seeded_sampling_reproduces(client):
    def sample():
        return client.chat.completions.create(model="demo", temperature=1.0, max_tokens=20, seed=42,
                                              messages=[{"role": "user", "content": "Invent a word."}])

    assert sample().choices[0].message.content == sample().choices[0].message.content


def test_raw_completions_plain_and_streaming(client):
    plain = client.completions.create(model="demo", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert "Paris" in plain.choices[0].text and plain.object == "text_completion"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="demo", prompt="The capital of France is", max_tokens=6, temperature=0, stream=True))
    assert streamed == plain.choices[0].text


def test_async_client(keyed_server):
    async def ask():
        async with openai.AsyncOpenAI(base_url=keyed_server.url + "/v1", api_key=KEY, max_retries=0) as client:
            answers = await asyncio.gather(*(client.chat.completions.create(
                model="demo", temperature=0, max_tokens=12,
                messages=[{"role": "user", "content": QUESTION}]) for _ in range(3)))
            stream = await client.chat.completions.create(model="demo", temperature=0, max_tokens=12, stream=True,
                                                          messages=[{"role": "user", "content": QUESTION}])
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return [a.choices[0].message.content for a in answers], streamed

    answers, streamed = asyncio.run(ask())
    assert len(set(answers)) == 1 and streamed == answers[0]


def test_context_overflow_is_a_bad_request_with_counts(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="demo", max_tokens=100,
                                       messages=[{"role": "user", "content": "word " * 9000}])
    assert error.value.code == "context_length_exceeded"
    assert "8192" in error.value.message and "tokens" in error.value.message


@pytest.mark.parametrize("extra", [{"audio": {"voice": "alloy", "format": "wav"}},
                                   {"tools": [{"type": "custom", "custom": {"name": "f"}}]},
                                   {"logit_bias": {"12": 5}}, {"response_format": {"type": "json_schema"}}])
def test_unsupported_fields_are_named(client, extra):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="demo", max_tokens=4, messages=[{"role": "user", "content": "hi"}],
                                       **extra)
    assert list(extra)[0] in error.value.message


def test_errors_raise_the_right_classes(keyed_server):
    wrong_key = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.models.list()
    right = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as error:
        right.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert error.value.code == "model_not_found"


ROUTES = [("GET", "/status"), ("POST", "/chat"), ("POST", "/reset"), ("GET", "/metrics"), ("GET", "/v1/models"),
          ("GET", "/v1/models/demo"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions")]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_but_health_needs_a_key(keyed_server, method, path):
    body = {"message": "hi"} if path == "/chat" else None
    for headers in ({}, auth("sk-wrong"), {"Authorization": KEY}):
        response = httpx.request(method, keyed_server.url + path, headers=headers, json=body)
        assert response.status_code == 401
        error = response.json()["error"]
        assert isinstance(error, dict) if path.startswith("/v1") else isinstance(error, str)
    assert httpx.get(keyed_server.url + "/health").status_code == 200


def test_conversations_are_private_to_their_key(keyed_server):
    url = keyed_server.url
    httpx.post(url + "/chat", headers=auth(KEY), timeout=60,
               json={"message": "My secret is 42.", "session_id": "shared", "max_tokens": 4})
    assert httpx.get(url + "/status", headers=auth(OTHER_KEY), params={"session_id": "shared"}).json()[
        "conversation_length"] == 0
    other = httpx.post(url + "/chat", headers=auth(OTHER_KEY), timeout=60,
                       json={"message": "hello", "session_id": "shared", "max_tokens": 4}).json()
    assert other["usage"]["prompt_tokens"] < 40  # no trace of the first key's round in its prompt
    httpx.post(url + "/reset", headers=auth(OTHER_KEY), json={"session_id": "shared"})
    assert httpx.get(url + "/status", headers=auth(KEY), params={"session_id": "shared"}).json()[
        "conversation_length"] == 2


def test_cors_preflight(keyed_server):
    preflight = httpx.options(keyed_server.url + "/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    stranger = httpx.options(keyed_server.url + "/v1/chat/completions", headers={
        "Origin": "http://evil.example.test", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in stranger.headers


def test_request_ids(keyed_server):
    response = httpx.get(keyed_server.url + "/health")
    assert len(response.headers["x-request-id"]) >= 16
    echoed = httpx.get(keyed_server.url + "/health", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    # the access log line is written once the response has gone out: give it a moment
    deadline = time.monotonic() + 10
    while "rid=trace-123" not in keyed_server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "rid=trace-123" in keyed_server.output()


def test_metrics_parse_and_count(keyed_server, client):
    client.chat.completions.create(model="demo", temperature=0, max_tokens=8,
                                   messages=[{"role": "user", "content": QUESTION}])
    text = httpx.get(keyed_server.url + "/metrics", headers=auth()).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["pure_api_requests"].samples
    assert any(s.labels == {"route": "/v1/chat/completions", "status": "200"} and s.value >= 1 for s in requests)
    assert any(s.labels.get("status") == "401" for s in requests)
    ttft = {s.name: s.value for s in families["pure_api_time_to_first_token_seconds"].samples}
    assert ttft["pure_api_time_to_first_token_seconds_count"] >= 1
    assert families["pure_api_completion_tokens"].samples[0].value >= 8
    for gauge in ("pure_api_running_requests", "pure_api_queued_requests", "pure_api_batch_size",
                  "pure_api_kv_cache_bytes", "pure_api_stored_conversations"):
        assert gauge in families
    assert families["pure_api_stored_conversations"].samples[0].value >= 1
    assert "pure_api_time_per_output_token_seconds" in families
    engine = [s.labels for s in families["pure_api_engine_info"].samples if s.value == 1]
    assert engine == [{"engine": keyed_server.engine, "model": "demo"}]
    assert "pure_api_cached_prompt_tokens" in families
