"""Per-request sampling through /chat, the same on every engine: seeds, top-k, penalties,
ignore_eos and max_tokens."""

import httpx
from helpers import ServerProcess

QUESTION = "Write a sentence about the sea."


def reply(server, session: str, **fields) -> dict:
    response = httpx.post(server.url + "/chat", timeout=120,
                          json={"message": QUESTION, "session_id": session, "max_tokens": 32, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_same_seed_gives_the_same_reply_and_another_seed_another(demo_server, engine_name, tmp_path):
    params = {"temperature": 1.0, "top_p": 0.95, "top_k": 50, "ignore_eos": True}
    seeded = dict(seed=1234, **params)
    first, again = replies_alike(demo_server, engine_name, tmp_path, seeded, seeded)
    other = reply(demo_server, "seed-other", seed=99, **params)["response"]
    assert first == again and first != other


def test_top_k_of_one_is_greedy(demo_server, engine_name, tmp_path):
    greedy, top_1 = replies_alike(demo_server, engine_name, tmp_path, dict(temperature=0),
                                  dict(temperature=1.0, top_k=1, seed=5))
    assert top_1 == greedy


def replies_alike(server, engine_name: str, tmp_path, *requests: dict) -> list[str]:
    """A reply to QUESTION for each of `requests`, each made as the others are. On llama.cpp that is
    a fresh server each: its logits move with where in its KV cache a sequence's cells land (by up to
    half a logit for the demo model; attention tiles by cell index), which a server whose idle
    caches come and go does not keep still. Elsewhere, one server, with the prompt warmed first so
    that every reply starts from a cache hit."""
    if engine_name != "llama.cpp":
        reply(server, f"{tmp_path.name}-warm", temperature=0)
        return [reply(server, f"{tmp_path.name}-{i}", **fields)["response"] for i, fields in enumerate(requests)]
    replies = []
    for i, fields in enumerate(requests):
        directory = tmp_path / f"fresh-{i}"
        directory.mkdir()
        with ServerProcess(db=directory / "conversations.sqlite3", engine="llama.cpp") as fresh:
            replies.append(reply(fresh, "alike", **fields)["response"])
    return replies


def repeated_words(text: str) -> float:
    """The share of a reply's words that repeat an earlier one."""
    words = text.lower().split()
    return 1 - len(set(words)) / len(words)


def test_a_repetition_penalty_makes_a_greedy_reply_repeat_itself_less(demo_server):
    plain = reply(demo_server, "plain", temperature=0, max_tokens=48, ignore_eos=True)["response"]
    penalized = reply(demo_server, "penalized", temperature=0, max_tokens=48, ignore_eos=True,
                      repetition_penalty=1.8)["response"]
    assert repeated_words(penalized) < repeated_words(plain)


def test_ignore_eos_runs_to_max_tokens_as_a_length_finish(demo_server):
    body = reply(demo_server, "long", temperature=0, max_tokens=20, ignore_eos=True)
    assert body["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 20


def test_presence_and_frequency_penalties_make_a_greedy_reply_repeat_itself_less(demo_server):
    def complete(**penalties) -> str:
        response = httpx.post(demo_server.url + "/v1/chat/completions", timeout=120, json={
            "model": "demo", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
            "max_tokens": 48, **penalties})
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    plain = complete()
    for penalty in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}):
        penalized = complete(**penalty)
        assert repeated_words(penalized) < repeated_words(plain)
