"""The documented API, in-process, on tiny random Llama and Qwen2 models loaded from directories."""

from fastapi.testclient import TestClient

from pure_model_api.config import Settings
from pure_model_api.server.app import create_app


def chat(client, message="hello", **fields):
    return client.post("/chat", json={"message": message, "max_tokens": 8, "temperature": 0, **fields})


def test_chat_answers_in_the_documented_shape(client):
    response = chat(client, "hello there")
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "hello there"
    assert isinstance(body["response"], str)
    assert body["status"] == "success"
    assert body["session_id"] == "default"
    assert body["finish_reason"] in ("stop", "length")
    assert body["usage"]["prompt_tokens"] > 0
    assert 0 <= body["usage"]["completion_tokens"] <= 8


def test_defaults_apply_when_only_the_message_is_sent(client):
    response = client.post("/chat", json={"message": "hi"})
    assert response.status_code == 200


def test_conversation_length_counts_messages_and_reset_clears_them(client):
    assert client.get("/status").json()["conversation_length"] == 0
    chat(client, "one")
    chat(client, "two")
    status = client.get("/status").json()
    assert status["conversation_length"] == 4
    assert {"model_name", "device", "memory_allocated", "dtype", "context_length", "uptime_s"} <= status.keys()
    assert status["device"] == "cpu" and status["memory_allocated"] > 0
    assert client.post("/reset").json()["status"] == "success"
    assert client.get("/status").json()["conversation_length"] == 0


def test_sessions_are_separate_and_reset_by_name(client):
    chat(client, "a", session_id="alice")
    chat(client, "b", session_id="bob")
    assert client.get("/status", params={"session_id": "alice"}).json()["conversation_length"] == 2
    assert client.post("/reset", json={"session_id": "alice"}).status_code == 200
    assert client.get("/status", params={"session_id": "alice"}).json()["conversation_length"] == 0
    assert client.get("/status", params={"session_id": "bob"}).json()["conversation_length"] == 2
    assert client.post("/reset?session_id=bob").status_code == 200
    assert client.get("/status", params={"session_id": "bob"}).json()["conversation_length"] == 0


def test_history_is_kept_to_the_last_rounds(tiny_models, tmp_path):
    settings = Settings(model=str(tiny_models["llama"]), device="cpu", engine="transformers",
                        db=str(tmp_path / "c.sqlite3"),
                        max_history_rounds=3)
    with TestClient(create_app(settings)) as client:
        from conftest import wait_healthy

        wait_healthy(client)
        for i in range(5):
            chat(client, f"message {i}", max_tokens=2)
        assert client.get("/status").json()["conversation_length"] == 6


def test_health_is_healthy_once_loaded(client):
    assert client.get("/health").json() == {"status": "healthy"}


def test_a_fault_after_the_stream_began_is_an_error_event_and_stores_nothing(client, monkeypatch):
    from helpers import sse_events

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(client.app.state.store, "add_turn", broken)
    with client.stream("POST", "/chat", json={"message": "hi", "max_tokens": 4, "stream": True,
                                              "ignore_eos": True}) as response:
        assert response.status_code == 200
        events = sse_events(response)
    assert [name for name, _ in events][-1] == "error"
    assert events[-1][1] == {"error": "internal server error; see the server log"}
    monkeypatch.undo()
    assert client.get("/status").json()["conversation_length"] == 0


def test_stream_errors_before_output_are_plain_http_errors(client):
    response = client.post("/chat", json={"message": "word " * 1100, "stream": True, "max_tokens": 8})
    assert response.status_code == 400 and "tokens" in response.json()["error"]
