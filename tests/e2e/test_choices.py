"""`n` choices on the demo model through a real server, on every engine, as the `openai` SDK asks
for them: as many choices as asked, each its own draw, whole or streamed with their index. (That
choice i repeats with seed + i is checked in-process, tests/server/test_choices_api.py: on
llama.cpp two runs of one request need not match, since a reply can change with where its KV cells
land among other conversations'.)"""

import openai
import pytest

ASK = {"model": "demo", "messages": [{"role": "user", "content": "Write a sentence about the sea."}],
       "max_tokens": 16, "temperature": 1.0, "seed": 42}


@pytest.fixture(scope="module")
def client(openai_server):
    return openai.OpenAI(base_url=openai_server.url + "/v1", api_key="none", max_retries=0)


def test_n_choices_whole_and_streamed(client):
    reply = client.chat.completions.create(**ASK, n=3)
    assert sorted(c.index for c in reply.choices) == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) == 3  # seeds 42, 43, 44
    streamed, finished = {}, set()
    for chunk in client.chat.completions.create(**ASK, n=3, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert sorted(streamed) == [0, 1, 2] == sorted(finished) and all(streamed.values())
