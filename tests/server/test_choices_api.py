"""`n` choices on /v1, in-process on the tiny random models: n independent replies to one prompt,
each its own index, the same streamed or not, reproducible with a seed; usage counts the prompt once."""

import json


def body(client, **fields) -> dict:
    return {"model": client.app.state.settings.model, "messages": [{"role": "user", "content": "Say a word."}],
            "max_tokens": 8, "temperature": 1.0, "seed": 5, **fields}


def streamed_texts(client, **fields) -> tuple[dict[int, str], dict]:
    texts: dict[int, str] = {}
    usage = None
    with client.stream("POST", "/v1/chat/completions", json=body(client, stream=True, **fields)) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                for choice in chunk["choices"]:
                    texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
    return texts, usage


def test_n_choices_are_independent_reproducible_and_the_same_streamed(client):
    answer = client.post("/v1/chat/completions", json=body(client, n=3))
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    choices = reply["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    texts = [c["message"]["content"] for c in choices]
    assert len(set(texts)) > 1  # seeds 5, 6, 7: different draws
    single = client.post("/v1/chat/completions", json=body(client)).json()
    assert single["choices"][0]["message"]["content"] == texts[0]  # choice 0 samples with the request's seed
    assert reply["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]
    assert reply["usage"]["completion_tokens"] == sum(
        client.post("/v1/chat/completions", json=body(client, seed=5 + i)).json()["usage"]["completion_tokens"]
        for i in range(3))
    streamed, usage = streamed_texts(client, n=3, stream_options={"include_usage": True})
    assert [streamed[i] for i in range(3)] == texts and usage == reply["usage"]


def test_completions_take_n_too_and_n_beyond_the_batch_is_a_400(client):
    completion = client.post("/v1/completions", json={"model": client.app.state.settings.model, "prompt": "a b c",
                                                      "max_tokens": 4, "n": 2, "seed": 1, "temperature": 1.0})
    assert completion.status_code == 200 and [c["index"] for c in completion.json()["choices"]] == [0, 1]
    too_many = client.post("/v1/chat/completions", json=body(client, n=17))
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "n", too_many.text
