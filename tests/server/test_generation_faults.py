"""A generation that raises inside the engine: that request gets a 500 in its surface's error shape
(or an error event, once a stream has begun), nothing is stored for it, and the next request is
served. The fault is injected into the real engines' own inference step."""

import json

import pytest
from conftest import make_client, wait_healthy
from helpers import sse_events

from pure_model_api.config import Settings
from pure_model_api.server.app import create_app


def client_on(engine: str, tiny_models, tmp, kv_token_budget: int = 2048):
    """The app in-process on an engine that runs its own inference thread: a tiny Llama on
    transformers, the demo GGUF on llama.cpp."""
    if engine == "transformers":
        return make_client(tiny_models["llama"], tmp)
    from fastapi.testclient import TestClient

    settings = Settings(model="demo", engine="llama.cpp", db=str(tmp / "c.sqlite3"), kv_token_budget=kv_token_budget)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module", params=["transformers", "llama.cpp"])
def faulty(request, tiny_models, tmp_path_factory):
    with client_on(request.param, tiny_models, tmp_path_factory.mktemp(f"faults-{request.param}")) as client:
        wait_healthy(client)
        yield client


def fail_next_step(client) -> None:
    """The engine's next inference step raises, once."""
    engine = client.app.state.service.engine
    real = engine._step

    def broken(*args, **kwargs):
        engine._step = real
        raise RuntimeError("injected: the accelerator fell over")

    engine._step = broken


def stored_rounds(client, session: str) -> int:
    return client.get("/status", params={"session_id": session}).json()["conversation_length"] // 2


REQUESTS = {
    "chat": ("/chat", {"message": "hi", "max_tokens": 4, "session_id": "faulty"}),
    "openai": ("/v1/chat/completions", {"model": "MODEL", "messages": [{"role": "user", "content": "hi"}],
                                        "max_tokens": 4}),
    "responses": ("/v1/responses", {"model": "MODEL", "input": "hi", "max_output_tokens": 4,
                                    "conversation": "faulty"}),
}


def body_for(client, surface: str, stream: bool) -> tuple[str, dict]:
    path, body = REQUESTS[surface]
    model = client.app.state.settings.model
    return path, json.loads(json.dumps({**body, "stream": stream}).replace("MODEL", model))


@pytest.mark.parametrize("surface", ["chat", "openai", "responses"])
def test_an_engine_fault_is_a_500_and_the_next_request_is_served(faulty, surface):
    faulty.post("/chat", json={"message": "first", "max_tokens": 2, "session_id": "faulty"})
    before = stored_rounds(faulty, "faulty")
    path, body = body_for(faulty, surface, stream=False)
    fail_next_step(faulty)
    failed = faulty.post(path, json=body)
    assert failed.status_code == 500
    error = failed.json()["error"]
    message = error["message"] if surface != "chat" else error
    assert message == "internal server error; see the server log"  # no traceback, no internals
    assert stored_rounds(faulty, "faulty") == before
    assert faulty.post(path, json=body).status_code == 200
    assert stored_rounds(faulty, "faulty") == before + (0 if surface == "openai" else 1)


@pytest.mark.parametrize("surface", ["chat", "openai", "responses"])
def test_an_engine_fault_in_a_stream_is_an_error_event_or_a_500(faulty, surface):
    before = stored_rounds(faulty, "faulty")
    path, body = body_for(faulty, surface, stream=True)
    fail_next_step(faulty)
    with faulty.stream("POST", path, json=body) as response:
        status = response.status_code
        if status == 500:  # the fault came before the first token: a plain error, no stream yet
            assert "internal server error" in response.read().decode()
        events = sse_events(response) if status == 200 else []
    names = [name for name, _ in events]
    if status == 500:
        pass
    elif surface == "chat":
        assert names[-1] == "error"
    elif surface == "openai":
        assert any(isinstance(data, dict) and "error" in data for _, data in events)
    else:
        assert names[-1] == "response.failed"
    assert stored_rounds(faulty, "faulty") == before
    with faulty.stream("POST", path, json=body) as response:
        assert response.status_code == 200 and "error" not in response.read().decode().split("data:")[-1][:40]
    assert stored_rounds(faulty, "faulty") == before + (0 if surface == "openai" else 1)


@pytest.mark.parametrize("engine", ["transformers", "llama.cpp"])
def test_an_inference_thread_that_dies_fails_every_request_and_health_says_so(engine, tiny_models, tmp_path):
    """A fault outside a step (admission, say) stops the inference thread: the request it was
    running fails at once (it used to wait for ever), /health turns 503 with the reason, and every
    later request is a 503 instead of a hang."""
    import threading
    import time

    with client_on(engine, tiny_models, tmp_path, kv_token_budget=4096) as client:
        wait_healthy(client)
        engine_object = client.app.state.service.engine
        answers = []
        running = threading.Thread(target=lambda: answers.append(client.post("/chat", json={
            "message": "Count.", "max_tokens": 900, "ignore_eos": True})), daemon=True)  # within either context
        running.start()
        deadline = time.monotonic() + 60
        while engine_object.stats().running_requests == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)

        def broken(*args, **kwargs):
            raise RuntimeError("injected: the scheduler's bookkeeping broke")

        engine_object._admit_waiting = broken
        running.join(60)
        assert answers and answers[0].status_code == 503 and "engine" in answers[0].json()["error"]
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert "injected" in health.json()["error"]
        later = client.post("/chat", json={"message": "hi", "max_tokens": 2})
        assert later.status_code == 503 and "restart" in later.json()["error"]
