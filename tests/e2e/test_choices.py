"""`n` choices on the demo model through a real server, on every engine, as the `openai` SDK asks
for them: as many choices as asked, each reproducible by its seed, the same when streamed."""

import openai
import pytest

ASK = {"model": "demo", "messages": [{"role": "user", "content": "Write a sentence about the sea."}],
       "max_tokens": 16, "temperature": 1.0, "seed": 42}


@pytest.fixture(scope="module")
def client(demo_server):
    return openai.OpenAI(base_url=demo_server.url + "/v1", api_key="none", max_retries=0)


def test_n_choices_whole_and_streamed(client):
    # Warm the prompt first: llama.cpp's logits differ slightly between a whole-prompt prefill and a
    # cache hit (as llama.cpp's own server documents), so every run below starts from a hit.
    client.chat.completions.create(**{**ASK, "max_tokens": 1})
    reply = client.chat.completions.create(**ASK, n=3)
    texts = [c.message.content for c in sorted(reply.choices, key=lambda c: c.index)]
    assert len(texts) == 3 and len(set(texts)) == 3
    streamed = {}
    for chunk in client.chat.completions.create(**ASK, n=3, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
    assert [streamed[i] for i in range(3)] == texts
