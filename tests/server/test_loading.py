"""The HTTP server answers while the model loads, and says so."""

from conftest import wait_healthy
from fastapi.testclient import TestClient

from pure_model_api.config import Settings
from pure_model_api.server.app import create_app


def test_loading_then_ready(tiny_models, tmp_path, gated_loader):
    gate, loader = gated_loader
    settings = Settings(model=str(tiny_models["qwen2"]), device="cpu", engine="transformers",
                        db=str(tmp_path / "c.sqlite3"))
    with TestClient(create_app(settings, engine_loader=loader)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json() == {"status": "loading"}
        busy = client.post("/chat", json={"message": "hi"})
        assert busy.status_code == 503 and "loading" in busy.json()["error"]
        status = client.get("/status").json()
        assert status["ready"] is False and status["conversation_length"] == 0
        gate.set()
        wait_healthy(client)
        assert client.post("/chat", json={"message": "hi", "max_tokens": 2}).status_code == 200


def test_a_model_that_cannot_load_is_reported_not_raised(tmp_path):
    settings = Settings(model=str(tmp_path / "missing.gguf"), device="cpu", engine="transformers",
                        db=str(tmp_path / "c.sqlite3"))
    with TestClient(create_app(settings)) as client:
        for _ in range(100):
            health = client.get("/health")
            if health.json()["status"] == "failed":
                break
        assert health.status_code == 503
        assert "missing.gguf" in health.json()["error"]


def test_an_unavailable_device_is_a_clear_error(tiny_models, tmp_path):
    settings = Settings(model=str(tiny_models["llama"]), device="cuda:7", engine="transformers",
                        db=str(tmp_path / "c.sqlite3"))
    with TestClient(create_app(settings)) as client:
        for _ in range(100):
            health = client.get("/health")
            if health.json()["status"] == "failed":
                break
        assert "cuda:7" in health.json()["error"] and "not available" in health.json()["error"]


def test_serving_beyond_loopback_without_keys_is_warned_about():
    """An operator who binds to every address and sets no key is told, in the log, what that means."""
    import subprocess
    import sys

    from helpers import ROOT

    def start(*flags: str) -> str:
        # an unreachable database ends the start right after the warning would be given
        done = subprocess.run([sys.executable, str(ROOT / "pure_model_api.py"), "--db",
                               "postgresql://nobody@127.0.0.1:9/none", *flags], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert done.returncode == 1 and "error: " in done.stderr
        return done.stderr

    assert "without API keys" in start("--host", "0.0.0.0")
    assert "without API keys" not in start("--host", "0.0.0.0", "--api-key", "k")
    assert "without API keys" not in start("--host", "127.0.0.1")
