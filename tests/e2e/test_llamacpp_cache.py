"""The llama.cpp engine keeps each conversation's KV cache between turns, never lends one
conversation's cache to another, and still answers correctly once a cache was evicted."""

import httpx
import pytest
from helpers import ServerProcess

TOPICS = {"a": ["I keep bees in my garden.", "How much honey do they make?", "When do I harvest it?"],
          "b": ["I am learning to sail.", "What knots should I know?", "How do I tie a bowline?"]}


def interleaved(server) -> dict[str, list[dict]]:
    """Two conversations, turn by turn: a1 b1 a2 b2 a3 b3."""
    bodies: dict[str, list[dict]] = {"a": [], "b": []}
    for turn in range(3):
        for name, messages in TOPICS.items():
            response = httpx.post(server.url + "/chat", timeout=120, json={
                "message": messages[turn], "session_id": f"topic-{name}", "temperature": 0, "max_tokens": 16})
            assert response.status_code == 200, response.text
            bodies[name].append(response.json())
    return bodies


@pytest.fixture(scope="module")
def cached_and_evicting(tmp_path_factory):
    """The same model twice: room for both conversations' caches, and room for barely one."""
    root = tmp_path_factory.mktemp("llamacpp")
    roomy = ServerProcess(db=root / "roomy.sqlite3", engine="llama.cpp").start()
    tight = ServerProcess("--kv-token-budget", "200", "--max-batch-size", "1", db=root / "tight.sqlite3",
                          engine="llama.cpp").start()
    yield roomy, tight
    roomy.stop()
    tight.stop()


def test_paris_on_the_demo_gguf(cached_and_evicting):
    roomy, _ = cached_and_evicting
    response = httpx.post(roomy.url + "/chat", timeout=60, json={
        "message": "What is the capital of France?", "temperature": 0, "session_id": "paris"})
    assert "Paris" in response.json()["response"]
    assert httpx.get(roomy.url + "/status").json()["engine"] == "llama.cpp"


def test_interleaved_conversations_reuse_their_own_cache_and_match_a_cold_run(cached_and_evicting):
    roomy, tight = cached_and_evicting
    warm, cold = interleaved(roomy), interleaved(tight)
    for name in TOPICS:
        # each later turn prefilled only what was new: its whole previous prompt came from the cache
        for before, after in zip(warm[name], warm[name][1:]):
            assert after["usage"]["cached_tokens"] >= before["usage"]["prompt_tokens"]
        # with room for barely one conversation, every turn found its cache evicted...
        for before, after in zip(cold[name], cold[name][1:]):
            assert after["usage"]["cached_tokens"] < before["usage"]["prompt_tokens"]
        # ...and the replies are the same: a kept cache changes nothing, and no conversation saw the other's
        assert [b["response"] for b in warm[name]] == [b["response"] for b in cold[name]]
        assert [b["usage"]["prompt_tokens"] for b in warm[name]] == [b["usage"]["prompt_tokens"] for b in cold[name]]
