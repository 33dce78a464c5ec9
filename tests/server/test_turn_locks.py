"""Which turns wait for which: only a conversation is shared state, so stateless responses run side
by side; and a conversation deleted while a turn runs stays deleted, whatever comes next."""

import threading
import time

from conftest import make_client, wait_healthy


def background(call) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def record_generations(client) -> list[str]:
    """'submit' and 'finish' of every generation, in the order the engine saw them."""
    events: list[str] = []
    service = client.app.state.service
    engine, observer = service.engine, service.observer
    submit, finished = engine.submit, observer.generation_finished

    def recording_submit(prompt_ids, params, constraint=None):
        events.append("submit")
        return submit(prompt_ids, params, constraint)

    def recording_finished(event):
        events.append("finish")
        finished(event)

    engine.submit, observer.generation_finished = recording_submit, recording_finished
    return events


def until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_stateless_responses_run_side_by_side(tiny_models, tmp_path):
    """Every first turn of a key used to share one lock, so they ran one after the other."""
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        events = record_generations(client)
        model = client.app.state.settings.model
        body = {"model": model, "input": "Tell me a long story.", "max_output_tokens": 300, "store": False}
        calls = [background(lambda: client.post("/v1/responses", json=body)) for _ in range(4)]
        for thread, _ in calls:
            thread.join(120)
        assert all(result[0].status_code == 200 for _, result in calls)
        assert events.index("finish") >= 2, events  # a second generation began before the first ended


def test_a_conversation_deleted_during_a_turn_stays_deleted(tiny_models, tmp_path):
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        model = client.app.state.settings.model
        service = client.app.state.service
        cid = client.post("/v1/conversations", json={}).json()["id"]

        def waiting_on_conversation() -> int:
            entry = service.locks._locks.get(("", cid))
            return entry[1] if entry else 0

        def respond():
            return client.post("/v1/responses", json={"model": model, "input": "A long story, please.",
                                                      "max_output_tokens": 400, "conversation": cid})

        first, first_result = background(respond)
        until(lambda: waiting_on_conversation() == 1)
        deleting, deleted = background(lambda: client.delete(f"/v1/conversations/{cid}"))
        until(lambda: waiting_on_conversation() == 2)
        second, second_result = background(respond)
        for thread in (first, deleting, second):
            thread.join(120)
        assert first_result[0].status_code == 200 and deleted[0].status_code == 200
        assert second_result[0].status_code == 404, second_result[0].text
        assert client.get(f"/v1/conversations/{cid}").status_code == 404
        assert client.get(f"/v1/conversations/{cid}/items").status_code == 404


def test_items_added_through_the_conversations_api_keep_the_window(tiny_models, tmp_path):
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        cid = client.post("/v1/conversations", json={}).json()["id"]
        for n in range(25):
            items = [{"type": "message", "role": "user", "content": f"question {n}"},
                     {"type": "message", "role": "assistant", "content": f"answer {n}"}]
            assert client.post(f"/v1/conversations/{cid}/items", json={"items": items}).status_code == 200
        kept = client.get(f"/v1/conversations/{cid}/items", params={"limit": 100, "order": "asc"}).json()["data"]
        users = [item["content"][0]["text"] for item in kept if item["role"] == "user"]
        assert len(users) <= 20 and users[-1] == "question 24"
        missing = client.post("/v1/conversations/conv_missing/items",
                              json={"items": [{"type": "message", "role": "user", "content": "hi"}]})
        assert missing.status_code == 404 and client.get("/v1/conversations/conv_missing").status_code == 404
