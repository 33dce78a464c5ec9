"""What a model may write that neither the store nor the next prompt takes as it is: a NUL character
(PostgreSQL refuses it in text; the API refuses it from clients). A tiny model that writes nothing
else shows the reply, the stream, the stored history and the next turn all carry U+FFFD instead."""

import pytest
from conftest import make_client, wait_healthy
from helpers import build_tiny_model, sse_events

NUL, REPLACEMENT = "\x00", "\ufffd"


@pytest.fixture(scope="module")
def nul_model(tmp_path_factory):
    return build_tiny_model("llama", tmp_path_factory.mktemp("nul-model"), always=NUL)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_nul_characters_a_model_writes_reach_the_client_and_the_store_as_replacement_characters(
        database, nul_model, tmp_path, request):
    db = request.getfixturevalue("postgres").new_database() if database == "postgresql" else str(tmp_path / "c.db")
    with make_client(nul_model, tmp_path, db=db) as client:
        wait_healthy(client)
        chat = {"message": "first", "session_id": "nul", "max_tokens": 3, "temperature": 0}
        answer = client.post("/chat", json=chat)
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"] == REPLACEMENT * 3
        with client.stream("POST", "/chat", json={**chat, "message": "second", "stream": True}) as stream:
            events = sse_events(stream)
        assert "".join(data["delta"] for name, data in events if name == "delta") == REPLACEMENT * 3
        assert events[-1][0] == "done"
        history = client.get("/sessions/nul").json()["messages"]
        assert [m["content"] for m in history] == ["first", REPLACEMENT * 3, "second", REPLACEMENT * 3]
