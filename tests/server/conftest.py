import threading
import time

import pytest
from fastapi.testclient import TestClient

from pure_model_api.config import Settings
from pure_model_api.server.app import create_app, load_engine


def wait_healthy(client: TestClient, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.get("/health")
        if health.status_code == 200:
            return
        if health.json().get("status") == "failed":  # no use waiting: say why at once
            raise RuntimeError(f"model failed to load: {health.json().get('error')}")
        time.sleep(0.05)
    raise TimeoutError("model did not load")


def make_client(model_dir, tmp_path, **overrides) -> TestClient:
    settings = Settings(**{"model": str(model_dir), "device": "cpu", "engine": "transformers",
                           "db": str(tmp_path / "c.sqlite3"), **overrides})
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(params=["llama", "qwen2"])
def client(request, tiny_models, tmp_path):
    """The app in-process on a tiny random-weight model of each family, loaded from its directory."""
    with make_client(tiny_models[request.param], tmp_path) as test_client:
        wait_healthy(test_client)
        yield test_client


@pytest.fixture
def gated_loader():
    """A real loader held back until the test opens the gate: the server is 'loading' meanwhile."""
    gate = threading.Event()

    def loader(settings):
        gate.wait(60)
        return load_engine(settings)

    return gate, loader
