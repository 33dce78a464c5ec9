"""Log-probabilities on the demo model through a real server, on every engine, as the `openai` SDK
reads them: the tokens spell the reply, whole or streamed, and a greedy reply's tokens are each the
likeliest."""

import math

import openai
import pytest

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def client(openai_server):
    return openai.OpenAI(base_url=openai_server.url + "/v1", api_key="none", max_retries=0)


def test_the_tokens_spell_the_reply_and_greedy_takes_the_likeliest(client):
    reply = client.chat.completions.create(model="demo", messages=QUESTION, temperature=0, max_tokens=24,
                                           logprobs=True, top_logprobs=2)
    choice = reply.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert len(entry.top_logprobs) == 2 and entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob, abs_tol=1e-4) and entry.logprob <= 0
    stream = client.chat.completions.create(model="demo", messages=QUESTION, temperature=0, max_tokens=24,
                                            logprobs=True, top_logprobs=2, stream=True)
    text, streamed = "", []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            streamed += choice.logprobs.content if choice.logprobs else []
    assert "".join(e.token for e in streamed) == text and text
    assert all(math.isclose(e.logprob, e.top_logprobs[0].logprob, abs_tol=1e-4) for e in streamed)


def test_a_completion_names_its_tokens_and_their_offsets(client):
    reply = client.completions.create(model="demo", prompt="The capital of France is", temperature=0, max_tokens=8,
                                      logprobs=1)
    logprobs = reply.choices[0].logprobs
    assert "".join(logprobs.tokens) == reply.choices[0].text
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]
    assert all(len(top) == 1 for top in logprobs.top_logprobs)
