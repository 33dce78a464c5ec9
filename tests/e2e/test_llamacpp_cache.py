"""The llama.cpp engine keeps each conversation's KV cache between turns, never lends one
conversation's cache to another, and still answers correctly once a cache was evicted."""

import httpx
import pytest
from helpers import ServerProcess

TOPICS = {"a": ["I keep bees in my garden.", "How much honey do they make?", "When do I harvest it?"],
          "b": ["I am learning to sail.", "What knots should I know?", "How do I tie a bowline?"]}
FILLER = "Here is a long note about something else entirely: " + "the weather was mild and dry, " * 40


def chat(server, session: str, message: str, max_tokens: int = 16) -> dict:
    response = httpx.post(server.url + "/chat", timeout=120, json={
        "message": message, "session_id": session, "temperature": 0, "max_tokens": max_tokens})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def roomy_and_tight(tmp_path_factory):
    """The same model twice: room for many conversations' caches, and room for about one with no
    saved states to fall back on (the KV tiers off; test_kv_tiers.py has them on)."""
    root = tmp_path_factory.mktemp("llamacpp")
    roomy = ServerProcess(db=root / "roomy.sqlite3", engine="llama.cpp").start()
    tight = ServerProcess("--kv-token-budget", "600", "--max-batch-size", "1", "--kv-ram-gb", "0", "--kv-disk-gb", "0",
                          db=root / "tight.sqlite3", engine="llama.cpp").start()
    yield roomy, tight
    roomy.stop()
    tight.stop()


def test_interleaved_conversations_each_reuse_their_own_cache(roomy_and_tight):
    roomy, _ = roomy_and_tight
    bodies = {name: [] for name in TOPICS}
    for turn in range(3):
        for name, messages in TOPICS.items():
            bodies[name].append(chat(roomy, f"topic-{name}", messages[turn]))
    for name in TOPICS:
        for before, after in zip(bodies[name], bodies[name][1:]):
            # the whole previous prompt came from this conversation's own cache (the other
            # conversation shares only the system prompt's ~30 tokens with it)
            assert before["usage"]["prompt_tokens"] <= after["usage"]["cached_tokens"] < after["usage"]["prompt_tokens"]
    assert httpx.get(roomy.url + "/status").json()["cached_conversations"] >= 2


def test_after_eviction_a_conversation_is_prefilled_again_and_answers_correctly(roomy_and_tight):
    _, tight = roomy_and_tight
    first = chat(tight, "paris", "Tell me the capital of France.", max_tokens=24)
    assert "Paris" in first["response"]
    for i in range(2):  # other conversations need the room: the first one's cache is evicted
        chat(tight, f"filler-{i}", f"Note {i}. {FILLER}", max_tokens=4)
    again = chat(tight, "paris", "Tell me the capital of France.", max_tokens=24)
    own_cache = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    assert again["usage"]["cached_tokens"] < own_cache - 8  # evicted: prefilled again (bar the system prompt)
    assert again["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    assert "Paris" in again["response"]


def test_a_gguf_server_on_llama_cpp_maps_no_torch(roomy_and_tight):
    """A user who installs only the llama.cpp extra can serve a GGUF file; here, where torch is
    installed, the server's process still maps none of it (start time and memory). transformers is
    pure Python and shows in no map: tests/unit/test_layers.py keeps its import out instead."""
    roomy, _ = roomy_and_tight
    assert chat(roomy, "no-torch", "Hello!", max_tokens=4)["status"] == "success"  # sampled, and answered
    maps = open(f"/proc/{roomy.process.pid}/maps").read()
    assert "libtorch" not in maps and "/torch/" not in maps
    assert "/tokenizers/" not in maps  # the Rust tokenizer of Hugging Face's stack


def test_n_choices_prefill_their_prompt_once_and_the_others_copy_it(roomy_and_tight):
    """The choices of an `n` request share one prompt: the first prefills it, the others wait for
    those cells and copy them (llama.cpp shares copied cells), so the prompt's tokens are computed
    once, not n times. Seen in /metrics: n - 1 prompts' worth of tokens counted as cached."""
    roomy, _ = roomy_and_tight

    def cached_total() -> float:
        (line,) = [line for line in httpx.get(roomy.url + "/metrics").text.splitlines()
                   if line.startswith("pure_api_cached_prompt_tokens_total ")]
        return float(line.split()[1])

    before = cached_total()
    reply = httpx.post(roomy.url + "/v1/chat/completions", timeout=300, json={
        "model": "demo", "n": 4, "max_tokens": 8, "temperature": 1.0, "seed": 7,
        "messages": [{"role": "user", "content": f"Four takes on this. {FILLER}"}]}).json()
    prompt = reply["usage"]["prompt_tokens"]
    assert len(reply["choices"]) == 4 and prompt > 300
    assert reply["usage"]["prompt_tokens_details"]["cached_tokens"] < 64  # a cache held the template's start
    assert cached_total() - before >= 3 * (prompt - 1)  # three choices copied all but the last token
