"""/status tells a key about its own conversations only; /metrics counts the store's in a worker
thread, so a slow or locked store never stops the event loop (and /health) while it counts."""

import threading

from conftest import make_client, wait_healthy

KEYS = ("key-one", "key-two")


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_status_counts_only_the_callers_conversations(tiny_models, tmp_path):
    with make_client(tiny_models["qwen2"], tmp_path, api_key=list(KEYS)) as client:
        wait_healthy(client)
        for n in range(3):
            client.post("/chat", json={"message": "hi", "max_tokens": 2, "session_id": f"s{n}"},
                        headers=auth(KEYS[0]))
        assert client.get("/status", headers=auth(KEYS[0])).json()["sessions"] == 3
        assert client.get("/status", headers=auth(KEYS[1])).json()["sessions"] == 0
        assert "pure_api_stored_conversations 3.0" in client.get("/metrics", headers=auth(KEYS[1])).text


def test_metrics_waiting_on_a_locked_store_does_not_stop_health(tiny_models, tmp_path):
    with make_client(tiny_models["qwen2"], tmp_path) as client:
        wait_healthy(client)
        client.post("/chat", json={"message": "hi", "max_tokens": 2})
        store_lock = client.app.state.store._lock  # what a long write holds
        health: list = []
        with store_lock:
            scrape = threading.Thread(target=lambda: client.get("/metrics"), daemon=True)
            scrape.start()
            scrape.join(0.5)  # /metrics is now waiting for the store
            asking = threading.Thread(target=lambda: health.append(client.get("/health").status_code), daemon=True)
            asking.start()
            asking.join(30)
            assert health == [200], "/health did not answer while /metrics waited for the store"
        scrape.join(30)
        assert "pure_api_stored_conversations 1.0" in client.get("/metrics").text
