import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import ServerProcess, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, root / family) for family in ("llama", "qwen2")}


@pytest.fixture(scope="session")
def demo_engine():
    """The demo model in-process, with the engine the server uses."""
    from pure_model_api.engine.engine import EngineOptions, InferenceEngine

    engine = InferenceEngine.load("demo", "cpu", "auto", EngineOptions(max_batch_size=16, max_queue=64))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """One real server process on the demo model, shared by the end-to-end tests."""
    db = tmp_path_factory.mktemp("e2e") / "conversations.sqlite3"
    server = ServerProcess(db=db).start()
    yield server
    server.stop()
