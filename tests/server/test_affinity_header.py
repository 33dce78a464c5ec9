"""What a load balancer reads: the conversation's id in X-Conversation-ID, accepted in place of the
body's, refused when the two disagree, and sent back with the answer; and the store on /status."""

from conftest import make_client, wait_healthy


def test_the_conversation_header_names_the_conversation(tiny_models, tmp_path):
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        answer = client.post("/chat", json={"message": "hi", "max_tokens": 2},
                             headers={"X-Conversation-ID": "by-header"})
        assert answer.status_code == 200 and answer.json()["session_id"] == "by-header"
        assert answer.headers["x-conversation-id"] == "by-header"
        assert client.get("/status", params={"session_id": "by-header"}).json()["conversation_length"] == 2
        clash = client.post("/chat", json={"message": "hi", "session_id": "a"}, headers={"X-Conversation-ID": "b"})
        assert clash.status_code == 400 and "X-Conversation-ID" in clash.json()["error"]
        bad = client.post("/chat", json={"message": "hi"}, headers={"X-Conversation-ID": "../etc"})
        assert bad.status_code == 400 and "session_id" in bad.json()["error"]

        conversation = client.post("/v1/conversations", json={}).json()["id"]
        model = client.app.state.settings.model
        response = client.post("/v1/responses", json={"model": model, "input": "hi", "max_output_tokens": 2},
                               headers={"X-Conversation-ID": conversation})
        assert response.status_code == 200 and response.json()["conversation"] == {"id": conversation}
        assert response.headers["x-conversation-id"] == conversation
        store = client.get("/status").json()["store"]
        assert store["kind"] == "sqlite" and store["operations"] > 0 and store["errors"] == 0
        assert 'pure_api_store_info{kind="sqlite"} 1.0' in client.get("/metrics").text


def test_reset_takes_the_conversation_from_the_header(tiny_models, tmp_path):
    """A reset sent through a balancer that routes by X-Conversation-ID clears that conversation,
    not `default`."""
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        for session in ("routed", "default"):
            client.post("/chat", json={"message": "hi", "max_tokens": 2, "session_id": session})
        reset = client.post("/reset", headers={"X-Conversation-ID": "routed"})
        assert reset.status_code == 200 and reset.json()["session_id"] == "routed"
        assert client.get("/status", params={"session_id": "routed"}).json()["conversation_length"] == 0
        assert client.get("/status", params={"session_id": "default"}).json()["conversation_length"] == 2
        clash = client.post("/reset", json={"session_id": "default"}, headers={"X-Conversation-ID": "routed"})
        assert clash.status_code == 400
