"""A conversation's turns reuse the KV cache of the turns before, where the engine can (vLLM's
prefix cache, llama.cpp's slots), and every engine reports honestly how many prompt tokens it
reused."""

import httpx

CONTEXT = ("Here are my notes for today: the garden needs water, the bicycle has a flat tyre, "
           "the library books are due on Friday, and the cat has a vet appointment at noon. ")


def turn(server, message: str) -> dict:
    response = httpx.post(server.url + "/chat", timeout=120, json={
        "message": message, "session_id": "cached", "temperature": 0, "max_tokens": 48, "ignore_eos": True})
    assert response.status_code == 200
    return response.json()["usage"]


def test_each_turn_reuses_the_cache_of_the_turns_before(demo_server):
    usages = [turn(demo_server, CONTEXT + f"Question {i}: what should I do first?") for i in range(4)]
    status = httpx.get(demo_server.url + "/status").json()
    if demo_server.engine == "vllm":
        block = status["kv_block_size"]
        for before, after in zip(usages, usages[1:]):
            # the whole previous prompt, in full blocks, came from the cache
            assert after["cached_tokens"] >= before["prompt_tokens"] // block * block
            assert after["cached_tokens"] < after["prompt_tokens"]
        assert usages[-1]["cached_tokens"] >= block
    elif demo_server.engine == "llama.cpp":  # its slot keeps the conversation's cache, token for token
        for before, after in zip(usages, usages[1:]):
            assert before["prompt_tokens"] <= after["cached_tokens"] < after["prompt_tokens"]
    else:  # the transformers engine prefills every prompt whole, and says so
        assert [u["cached_tokens"] for u in usages] == [0, 0, 0, 0]
    assert [u["prompt_tokens"] for u in usages] == sorted(u["prompt_tokens"] for u in usages)
