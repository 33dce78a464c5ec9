"""Log-probabilities on chat completions (`logprobs`, `top_logprobs`) and completions (`logprobs`),
in-process on the tiny random models: one entry per reply token, the same streamed or not, the
likeliest alternatives first, and a greedy reply's every token the likeliest."""

import json

import pytest


def chat(client, stream=False, **fields):
    body = {"model": client.app.state.settings.model, "messages": [{"role": "user", "content": "Count."}],
            "max_tokens": 12, "temperature": 0, "stream": stream, **fields}
    if not stream:
        return client.post("/v1/chat/completions", json=body)
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


def test_a_chat_reply_has_one_entry_per_token_the_greedy_choice_first(client):
    answer = chat(client, logprobs=True, top_logprobs=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    entries = body["choices"][0]["logprobs"]["content"]
    assert len(entries) == body["usage"]["completion_tokens"] > 0
    for entry in entries:
        top = entry["top_logprobs"]
        assert len(top) == 3 and [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert entry["logprob"] == pytest.approx(top[0]["logprob"]) and entry["logprob"] <= 0
        assert entry["bytes"] == list(entry["token"].encode())
    streamed = [e for chunk in chat(client, stream=True, logprobs=True, top_logprobs=3) for choice in chunk["choices"]
                if choice.get("logprobs") for e in choice["logprobs"]["content"]]
    assert streamed == entries
    assert chat(client).json()["choices"][0]["logprobs"] is None  # only when asked


def test_a_completion_has_the_legacy_shape(client):
    answer = client.post("/v1/completions", json={"model": client.app.state.settings.model, "prompt": "One, two,",
                                                  "max_tokens": 6, "temperature": 0, "logprobs": 2})
    assert answer.status_code == 200, answer.text
    choice, usage = answer.json()["choices"][0], answer.json()["usage"]
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == usage["completion_tokens"]
    assert logprobs["text_offset"] == sorted(logprobs["text_offset"]) and logprobs["text_offset"][0] == 0
    assert all(1 <= len(top) <= 2 for top in logprobs["top_logprobs"])


@pytest.mark.parametrize("fields, param", [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                                           ({"top_logprobs": 2}, "top_logprobs"),
                                           ({"logprobs": 3}, "logprobs")])
def test_out_of_range_or_inconsistent_requests_are_a_400(client, fields, param):
    answer = chat(client, **fields)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text
    completion = client.post("/v1/completions", json={"model": client.app.state.settings.model, "prompt": "a",
                                                      "logprobs": 21})
    assert completion.status_code == 400 and completion.json()["error"]["param"] == "logprobs"
