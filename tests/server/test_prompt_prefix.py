"""What the service sends the engine, turn after turn: each prompt begins with the previous
prompt and its reply, so an engine's prefix cache hits, also once the 20-round window is full."""

from conftest import make_client, wait_healthy


def record_prompts(client) -> list[list[int]]:
    """Spy on the real engine: note each prompt, then let the engine run it."""
    engine = client.app.state.service.engine
    prompts: list[list[int]] = []
    submit = engine.submit

    def recording_submit(prompt_ids, params, constraint=None):
        prompts.append(list(prompt_ids))
        return submit(prompt_ids, params, constraint)

    engine.submit = recording_submit
    return prompts


def test_each_turn_extends_the_previous_prompt_and_reply(tiny_models, tmp_path):
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        prompts = record_prompts(client)
        engine = client.app.state.service.engine
        replies = []
        for turn in range(30):
            body = client.post("/chat", json={"message": f"turn {turn}: tell me more", "max_tokens": 6,
                                              "temperature": 0, "session_id": "long"}).json()
            replies.append(body["response"])
        extended = []
        for turn in range(29):
            before = prompts[turn] + engine.encode(replies[turn])
            extended.append(prompts[turn + 1][:len(before)] == before)
        # Turns 1-20 fill the window; the 21st round drops the oldest 10 at once, so exactly one
        # prompt (turn 22's) starts afresh; every other turn extends the one before it.
        assert extended.count(False) == 1 and extended.index(False) == 20
        status = client.get("/status", params={"session_id": "long"}).json()
        assert status["conversation_length"] <= 40


def test_prompts_are_the_chat_template_tokens(tiny_models, tmp_path):
    """Piecewise tokenizing must still be the template's text, token for token decodable."""
    with make_client(tiny_models["llama"], tmp_path) as client:
        wait_healthy(client)
        engine = client.app.state.service.engine
        messages = [{"role": "user", "content": "Hello there"},
                    {"role": "assistant", "content": " Hi! How can I help?"},
                    {"role": "user", "content": "你好 👋 code: `x = {1: 2}`"}]
        ids = engine.render_chat(messages)
        text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert engine.tokenizer.decode(ids) == text
