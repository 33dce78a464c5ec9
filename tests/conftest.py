import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import ServerProcess, build_tiny_model  # noqa: E402
from postgres import temporary_server  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, root / family) for family in ("llama", "qwen2")}


@pytest.fixture(scope="session")
def demo_engine():
    """The demo model in-process, with the engine the server uses."""
    from pure_model_api.engine.base import EngineOptions
    from pure_model_api.engine.transformers import TransformersEngine

    engine = TransformersEngine.load(EngineOptions(model="demo", device="cpu", max_batch_size=16, max_queue=64))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the run; a missing one fails, it is not skipped."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(temporary_server())
        except (RuntimeError, subprocess.CalledProcessError) as error:
            pytest.fail(f"cannot start PostgreSQL: {getattr(error, 'stderr', None) or error}")
        yield server


# The engine-independent end-to-end suite runs once per engine. PURE_API_TEST_ENGINES narrows it
# for a quick local run; by default every engine runs, and a missing one is a failure, not a skip.
ENGINES = [e for e in os.environ.get("PURE_API_TEST_ENGINES", "transformers,vllm,llama.cpp").split(",") if e]


@pytest.fixture(scope="session", params=ENGINES)
def engine_name(request) -> str:
    package = {"vllm": "vllm", "llama.cpp": "llama_cpp"}.get(request.param)
    if package and importlib.util.find_spec(package) is None:
        pytest.fail(f"{package} is not installed, so the {request.param} engine tests cannot run: `make setup` "
                    f"installs it (or narrow PURE_API_TEST_ENGINES to leave them out knowingly)")
    return request.param


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory, engine_name):
    """One real server process on the demo model per engine, shared by the end-to-end tests."""
    db = tmp_path_factory.mktemp(f"e2e-{engine_name}") / "conversations.sqlite3"
    server = ServerProcess(db=db, engine=engine_name).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory, engine_name):
    """A second demo server per engine, for the /v1 features an agent uses (n choices, schemas,
    log-probabilities). On llama.cpp a greedy reply can change with what else the KV cache holds
    (where its cells land), and several tests on `demo_server` compare two replies made in turn:
    traffic of their own, several choices at once most of all, stays off that server."""
    db = tmp_path_factory.mktemp(f"openai-{engine_name}") / "conversations.sqlite3"
    server = ServerProcess(db=db, engine=engine_name).start()
    yield server
    server.stop()


# The fast tier (`make check`) leaves these out; `make test` runs everything. Each costs minutes, or
# needs a server beside the service (PostgreSQL, nginx, Chromium).
SLOW_MODULES = {
    "test_soak.py": "a 90-second soak",
    "test_openapi_fuzz.py": "hundreds of generated requests",
    "test_faults.py": "SIGKILLs and restarts",
    "test_lifecycle.py": "restarts and SIGTERM under load",
    "test_replicas.py": "PostgreSQL and two replicas",
    "test_balancer.py": "nginx",
    "test_postgres_store.py": "PostgreSQL",
    "test_store_on_postgresql.py": "PostgreSQL",
    "test_chat_page.py": "Chromium",
}
SLOW_TESTS = {
    "test_greedy_replies_do_not_depend_on_the_batch": "37 s of batched generation",
    "test_a_late_request_joins_the_running_batch": "12 s",
    "test_truncation_disabled_refuses_and_auto_drops_the_oldest_rounds": "prefills 9,000 tokens",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in SLOW_MODULES or getattr(item, "originalname", item.name) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter):
    """A skipped browser test must not pass unnoticed: say so at the end, where people look."""
    skipped = terminalreporter.stats.get("skipped", [])
    if any("BROWSER TESTS DID NOT RUN" in str(report.longrepr) for report in skipped):
        terminalreporter.write_sep("!", "BROWSER TESTS DID NOT RUN: no Chromium. Install it with "
                                        "`apt-get install chromium`; CI (CI=true) fails without it", red=True)
