"""Every bad request is a 400 with {"error": ...}; never FastAPI's 422, never a traceback."""

import pytest

BAD_BODIES = [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ("{}", "message"),
    ('{"message": ""}', "message"),
    ('{"message": "   "}', "message"),
    ('{"message": 5}', "message"),
    ('{"message": "hi", "max_tokens": 0}', "max_tokens"),
    ('{"message": "hi", "max_tokens": "5"}', "max_tokens"),
    ('{"message": "hi", "max_tokens": 1.5}', "max_tokens"),
    ('{"message": "hi", "temperature": -0.1}', "temperature"),
    ('{"message": "hi", "temperature": "hot"}', "temperature"),
    ('{"message": "hi", "temperature": NaN}', "temperature"),
    ('{"message": "hi", "session_id": "has space"}', "session_id"),
    ('{"message": "hi", "session_id": ""}', "session_id"),
    ('{"message": "hi", "session_id": "' + "x" * 129 + '"}', "session_id"),
]


@pytest.fixture(scope="module")
def surface(tmp_path_factory):
    """The app with no model at all: what is refused before a model is needed (bad bodies, paths,
    methods, sizes) is refused the same way, and these tests pay for no model load each."""
    from fastapi.testclient import TestClient

    from pure_model_api.config import Settings
    from pure_model_api.errors import ModelLoadError
    from pure_model_api.server.app import create_app

    def no_model(settings):
        raise ModelLoadError("these tests need no model")

    settings = Settings(model="none", device="cpu", engine="transformers",
                        db=str(tmp_path_factory.mktemp("surface") / "c.sqlite3"))
    with TestClient(create_app(settings, engine_loader=no_model), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("body,mentions", BAD_BODIES)
def test_bad_chat_requests_are_400_with_a_reason(surface, body, mentions):
    response = surface.post("/chat", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and mentions in error
    assert "Traceback" not in response.text


def test_max_tokens_beyond_the_models_context_is_a_400(client):
    response = client.post("/chat", json={"message": "hi", "max_tokens": 100000})
    assert response.status_code == 400 and "max_tokens" in response.json()["error"]


def test_a_message_beyond_the_context_says_how_long_it_is(client):
    response = client.post("/chat", json={"message": "word " * 1100, "max_tokens": 8})
    assert response.status_code == 400
    assert "tokens" in response.json()["error"] and "1024" in response.json()["error"]


def test_bad_reset_requests(surface):
    assert surface.post("/reset", json={"session_id": "bad id!"}).status_code == 400
    assert surface.post("/reset", content="nope").status_code == 400


def test_unknown_path_and_wrong_method(surface):
    missing = surface.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = surface.get("/chat")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_body_over_the_limit_is_413(surface):
    response = surface.post("/chat", content=b'{"message": "' + b"x" * (1 << 20) + b'"}')
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_bad_request_loses_nothing_already_stored(client):
    client.post("/chat", json={"message": "keep me", "max_tokens": 2})
    client.post("/chat", content="garbage")
    client.post("/chat", json={"message": "hi", "max_tokens": -1})
    assert client.get("/status").json()["conversation_length"] == 2


def test_an_internal_fault_is_a_500_without_a_traceback_and_stores_nothing(client, monkeypatch):
    store = client.app.state.store

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "add_turn", broken)
    response = client.post("/chat", json={"message": "hi", "max_tokens": 2})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error; see the server log"}
    monkeypatch.undo()
    assert client.get("/status").json()["conversation_length"] == 0


def test_deeply_nested_json_is_a_400_on_both_surfaces(surface):
    deep = "[" * 100_000 + "]" * 100_000
    chat = surface.post("/chat", content=deep, headers={"Content-Type": "application/json"})
    assert chat.status_code == 400 and "nested" in chat.json()["error"]
    openai = surface.post("/v1/chat/completions", content='{"model": "x", "messages": ' + deep + "}")
    assert openai.status_code == 400 and openai.json()["error"]["type"] == "invalid_request_error"


def test_oversized_headers_are_refused_before_the_app(surface):
    response = surface.get("/status", headers={"X-Padding": "x" * 100_000})
    assert response.status_code == 431 and "headers" in response.json()["error"]
    assert surface.get("/status", headers={"X-Padding": "x" * 1000}).status_code == 200


def test_more_messages_than_the_bound_is_a_400_on_both_surfaces(client):
    from pure_model_api.protocol.limits import MAX_MESSAGES

    model = client.app.state.settings.model
    messages = [{"role": "user", "content": "a"}] * (MAX_MESSAGES + 1)
    chat = client.post("/v1/chat/completions", json={"model": model, "messages": messages})
    assert chat.status_code == 400 and str(MAX_MESSAGES) in chat.json()["error"]["message"]
    assert chat.json()["error"]["param"] == "messages"
    items = [{"type": "message", "role": "user", "content": "a"}] * (MAX_MESSAGES + 1)
    responses = client.post("/v1/responses", json={"model": model, "input": items})
    assert responses.status_code == 400 and str(MAX_MESSAGES) in responses.json()["error"]["message"]
    long_text = client.post("/v1/responses", json={"model": model, "input": "a" * 3000, "max_output_tokens": 1})
    assert long_text.status_code == 200, long_text.text  # the bound counts items, not characters


def test_a_chat_template_that_refuses_the_messages_is_a_400_naming_why(tiny_models, tmp_path):
    """Gemma's template calls raise_exception when roles do not alternate (it was a 500)."""
    import shutil

    from conftest import make_client, wait_healthy
    from helpers import LLAMA_MODELS

    model = tmp_path / "gemma-templated"
    shutil.copytree(tiny_models["llama"], model)
    shutil.copy(LLAMA_MODELS / "templates" / "google-gemma-2-2b-it.jinja", model / "chat_template.jinja")
    with make_client(model, tmp_path) as gemma:
        wait_healthy(gemma)
        name = gemma.app.state.settings.model
        refused = gemma.post("/v1/chat/completions", json={"model": name, "max_tokens": 2, "messages": [
            {"role": "user", "content": "one"}, {"role": "user", "content": "two"}]})
        assert refused.status_code == 400 and "alternate" in refused.json()["error"]["message"], refused.text
        fine = gemma.post("/v1/chat/completions", json={"model": name, "max_tokens": 2, "messages": [
            {"role": "user", "content": "one"}]})
        assert fine.status_code == 200
