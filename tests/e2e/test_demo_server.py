"""The real server process on the real demo model, driven over HTTP as a user would."""

import asyncio
import json
import re
import time

import httpx
import pytest
from helpers import sse_events

GREEDY = {"temperature": 0, "max_tokens": 48}


def chat(server, message, **fields):
    return httpx.post(server.url + "/chat", json={"message": message, **GREEDY, **fields}, timeout=120)


def status(server, session_id=None):
    params = {"session_id": session_id} if session_id else {}
    return httpx.get(server.url + "/status", params=params, timeout=10).json()


def becomes_idle(server, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if status(server)["running_requests"] == 0:
            return True
        time.sleep(0.05)
    return False


def test_paris(demo_server):
    response = chat(demo_server, "Tell me the capital of France.", session_id="paris")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["message"] == "Tell me the capital of France."
    assert "Paris" in body["response"]


def test_the_second_message_sees_the_first(demo_server):
    first = chat(demo_server, "Tell me the capital of France.", session_id="memory").json()
    second = chat(demo_server, "What did I just ask?", session_id="memory").json()
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    assert "France" in second["response"]
    assert status(demo_server, "memory")["conversation_length"] == 4


def test_default_conversation_status_reset_and_health(demo_server):
    url = demo_server.url
    assert httpx.get(url + "/health").json() == {"status": "healthy"}
    httpx.post(url + "/reset")
    chat(demo_server, "Hi!")
    chat(demo_server, "How are you?")
    current = status(demo_server)
    assert current["conversation_length"] == 4
    assert current["model_name"] == "demo" and current["device"] == "cpu"
    assert current["memory_allocated"] > 90_000_000  # the weights, at least (97 MB as Q4_1 on llama.cpp)
    assert httpx.post(url + "/reset").json()["status"] == "success"
    assert status(demo_server)["conversation_length"] == 0


def test_chinese_round_trip(demo_server):
    response = chat(demo_server, "你好！", session_id="zh")
    assert response.status_code == 200
    raw = response.content.decode("utf-8")  # valid UTF-8 or this raises
    body = json.loads(raw)
    assert body["message"] == "你好！"
    assert body["response"] and "\ufffd" not in body["response"]


def test_stream_shape_and_the_round_is_stored(demo_server):
    before = status(demo_server, "streamed")["conversation_length"]
    with httpx.stream("POST", demo_server.url + "/chat", timeout=120,
                      json={"message": "Name three colors.", "stream": True, "session_id": "streamed", **GREEDY}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 3
    done = events[-1][1]
    assert done["response"] == "".join(data["delta"] for _, data in events[:-1])
    assert done["status"] == "success" and done["finish_reason"] in ("stop", "length")
    assert done["usage"]["completion_tokens"] > 0
    assert status(demo_server, "streamed")["conversation_length"] == before + 2
    plain = chat(demo_server, "Name three colors.", session_id="streamed-plain").json()
    assert plain["response"] == done["response"]


def test_chinese_reply_streams_without_broken_characters(demo_server):
    with httpx.stream("POST", demo_server.url + "/chat", timeout=120,
                      json={"message": "请用中文回答：北京是哪个国家的首都？", "stream": True, **GREEDY,
                            "session_id": "zh-stream"}) as r:
        events = sse_events(r)
    deltas = [data["delta"] for name, data in events if name == "delta"]
    assert deltas and not any("\ufffd" in d for d in deltas)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(deltas))


NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()


def mentions(text: str, n: int) -> bool:
    """The reply names the number n, in digits or in a word."""
    return re.search(rf"(?<![\d.]){n}(?!\d)|\b{NUMBER_WORDS[n]}\b", text, re.IGNORECASE) is not None


def test_sixteen_simultaneous_chats_are_each_their_own_reply(demo_server):
    """Sixteen chats batched together each get a reply to their own prompt, never another row's.
    Token for token equality with the solo reply is not promised (README, Engines): a batch's rows
    are added in another order than one row's, and even a prompt prefilled alone can come out a few
    bits apart, which flips a near-tie now and then (seen: 14 and 15 of 16 identical on transformers,
    3 on llama.cpp, and a first word changed on vLLM). So the test asks what a user notices: every
    reply is about its own number. On the transformers engine most replies must also be identical:
    a padding or position bug there would change nearly all of them."""
    prompts = [f"Give me one fact about the number {n}." for n in range(16)]
    solo = [chat(demo_server, p, session_id=f"solo-{i}", max_tokens=24).json()["response"]
            for i, p in enumerate(prompts)]

    async def together():
        async with httpx.AsyncClient(base_url=demo_server.url, timeout=300) as client:
            calls = [client.post("/chat", json={"message": p, "session_id": f"crowd-{i}", "temperature": 0,
                                                "max_tokens": 24}) for i, p in enumerate(prompts)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(together())
    assert [r.status_code for r in responses] == [200] * 16
    crowd = [r.json()["response"] for r in responses]
    pairs = list(zip(crowd, solo))
    assert sum(mentions(alone, n) for n, alone in enumerate(solo)) >= 12, solo  # the check means something
    for n, (batched, alone) in enumerate(pairs):
        assert mentions(batched, n) or not mentions(alone, n), (n, batched, alone)
    if demo_server.engine == "transformers":
        assert sum(b == a for b, a in pairs) >= 10, pairs


def test_two_calls_on_one_conversation_run_in_arrival_order(demo_server):
    httpx.post(demo_server.url + "/reset", json={"session_id": "ordered"})

    async def both():
        async with httpx.AsyncClient(base_url=demo_server.url, timeout=300) as client:
            first = asyncio.create_task(client.post("/chat", json={"message": "first", "session_id": "ordered",
                                                                   **GREEDY}))
            await asyncio.sleep(0.05)
            second = client.post("/chat", json={"message": "second", "session_id": "ordered", **GREEDY})
            return await first, await second

    first, second = asyncio.run(both())
    assert first.status_code == second.status_code == 200
    # the second saw the first round in its prompt
    assert second.json()["usage"]["prompt_tokens"] > first.json()["usage"]["prompt_tokens"]
    assert status(demo_server, "ordered")["conversation_length"] == 4


def test_disconnect_mid_stream_frees_the_slot_and_stores_nothing(demo_server):
    with httpx.stream("POST", demo_server.url + "/chat", timeout=120,
                      json={"message": "Count from one to five hundred.", "stream": True, "session_id": "gone",
                            "temperature": 0, "max_tokens": 400, "ignore_eos": True}) as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                break
        assert status(demo_server)["running_requests"] == 1
    assert becomes_idle(demo_server)  # closed: the server notices within a few decode steps
    assert status(demo_server, "gone")["conversation_length"] == 0


def test_disconnect_without_streaming_is_cancelled_too(demo_server):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(demo_server.url + "/chat", timeout=1.5,
                   json={"message": "Count to a thousand.", "session_id": "gone-plain", "temperature": 0,
                         "max_tokens": 400, "ignore_eos": True})
    assert becomes_idle(demo_server)
    assert status(demo_server, "gone-plain")["conversation_length"] == 0


def test_health_and_status_answer_while_a_reply_is_generated(demo_server):
    async def scenario():
        async with httpx.AsyncClient(base_url=demo_server.url, timeout=120) as client:
            long = asyncio.create_task(client.post("/chat", json={
                "message": "Write a long poem.", "max_tokens": 150, "ignore_eos": True, "session_id": "busy"}))
            await demo_server.engine_holds(1)
            started = asyncio.get_running_loop().time()
            health = await client.get("/health")
            current = await client.get("/status")
            answered_in = asyncio.get_running_loop().time() - started
            return health, current, answered_in, long.done(), await long

    health, current, answered_in, long_was_done, long = asyncio.run(scenario())
    assert health.status_code == 200 and current.json()["running_requests"] == 1
    assert not long_was_done and answered_in < 5.0  # not stuck behind the ~15 s reply (a loose bound)
    assert long.status_code == 200
