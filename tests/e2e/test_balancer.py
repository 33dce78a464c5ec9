"""The shipped nginx setup (deploy/nginx-pure-model-api.conf) through a real nginx: every turn of a
conversation reaches one replica while it is up, and moves to the other when it stops."""

import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest
from helpers import ROOT, ServerProcess, free_port

SHIPPED = ROOT / "deploy" / "nginx-pure-model-api.conf"


@pytest.fixture
def balanced(postgres, tiny_models, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.fail("nginx is not installed: `apt-get install nginx-light` (.ci/run does)")
    url = postgres.new_database()
    replicas = [ServerProcess("--model", str(tiny_models["llama"]), db=url, log_dir=tmp_path).start()
                for _ in range(2)]
    port = free_port()
    site = SHIPPED.read_text().replace("127.0.0.1:5001", f"127.0.0.1:{replicas[0].port}").replace(
        "127.0.0.1:5002", f"127.0.0.1:{replicas[1].port}").replace("listen 8080;", f"listen 127.0.0.1:{port};")
    for name in ("logs", "temp"):
        (tmp_path / name).mkdir()
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "") + "worker_processes 1;\nerror_log logs/error.log;\n"
        "pid logs/nginx.pid;\nevents {}\nhttp {\naccess_log logs/access.log;\n"
        "client_body_temp_path temp/body;\nproxy_temp_path temp/proxy;\n" + site + "\n}\n")
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                               stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield base, replicas
    process.send_signal(signal.SIGQUIT)
    process.wait(30)
    for server in replicas:
        server.stop()


def served(replicas) -> list[int]:
    return [httpx.get(r.url + "/status").json()["requests_served"] for r in replicas]


def chat(base: str, conversation: str, text: str) -> httpx.Response:
    return httpx.post(base + "/chat", json={"message": text, "max_tokens": 4},
                      headers={"X-Conversation-ID": conversation}, timeout=60)


def test_a_conversation_stays_on_one_replica_and_moves_when_it_stops(balanced):
    base, replicas = balanced
    homes = {}
    # the consistent hash places a conversation by the replicas' addresses, whose ports are random
    # here: with 6 conversations all of them landed on one replica about once in 30 runs, so new
    # conversations come until both replicas have one (2**-31 to fail by chance)
    for conversation in (f"c{n}" for n in range(32)):
        if len(homes) >= 6 and set(homes.values()) == {0, 1}:
            break
        for turn in range(3):
            before = served(replicas)
            answer = chat(base, conversation, f"{conversation} turn {turn}")
            assert answer.status_code == 200 and answer.json()["session_id"] == conversation
            assert answer.headers["x-conversation-id"] == conversation
            moved = [n for n, (a, b) in enumerate(zip(before, served(replicas))) if b > a]
            assert len(moved) == 1
            homes.setdefault(conversation, moved[0])
            assert moved[0] == homes[conversation]  # the same replica every turn
    assert set(homes.values()) == {0, 1}  # the hash spreads conversations over both

    conversation = next(c for c, home in homes.items() if home == 0)
    assert replicas[0].stop() == 0  # shut down (SIGTERM)
    answer = chat(base, conversation, "after the move")
    assert answer.status_code == 200
    history = httpx.get(f"{replicas[1].url}/sessions/{conversation}").json()["messages"]
    assert [m["content"] for m in history if m["role"] == "user"] == [
        f"{conversation} turn {n}" for n in range(3)] + ["after the move"]
