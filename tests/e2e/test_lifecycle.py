"""Starting, restarting and stopping the real server process."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
from helpers import ROOT, ServerProcess, asse_events, free_port


def test_a_full_queue_answers_503_at_once_and_sigterm_finishes_and_stores_what_was_admitted(tmp_path, engine_name):
    """The life of a loaded server: two requests run and two wait (`--max-queue 2`); a fifth is
    refused at once; SIGTERM stops new work but finishes and stores the four, streamed or not; and a
    restart (on any engine: the store does not depend on it) finds them."""
    server = ServerProcess("--max-batch-size", "2", "--max-queue", "2", db=tmp_path / "c.sqlite3",
                           engine=engine_name).start()
    story = {"message": "Tell me a long story.", "max_tokens": 60, "ignore_eos": True}

    async def streamed(client, session):
        async with client.stream("POST", "/chat", json={**story, "session_id": session, "stream": True}) as response:
            return await asse_events(response)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            plain = [asyncio.create_task(client.post("/chat", json={**story, "session_id": f"late{n}"}))
                     for n in range(3)]
            stream = asyncio.create_task(streamed(client, "late-stream"))
            await server.engine_holds(4)
            started = time.monotonic()
            busy = await client.post("/chat", json={"message": "me too", "session_id": "busy"})
            waited = time.monotonic() - started
            server.process.send_signal(signal.SIGTERM)
            await server.refuses_connections()
            try:
                refused = (await client.post("/chat", json={"message": "too late"})).status_code
            except httpx.TransportError:
                refused = "connection refused"
            return busy, waited, await asyncio.gather(*plain), await stream, refused

    busy, waited, finished, events, refused = asyncio.run(scenario())
    assert busy.status_code == 503
    assert busy.json() == {"error": "server is busy, retry later"}
    assert busy.headers["retry-after"].isdigit()
    assert waited < 5.0  # refused at once, not after the replies (a loose bound: a noisy machine)
    assert [r.status_code for r in finished] == [200] * 3
    assert all(r.json()["finish_reason"] == "length" for r in finished)
    assert events[-1][0] == "done"
    assert refused in (503, "connection refused")
    assert server.process.wait(60) == 0
    server.log.close()
    assert "Traceback" not in server.output()  # a clean stop (vLLM's AsyncLLM printed one at exit)
    with ServerProcess(db=tmp_path / "c.sqlite3") as again:
        for session in ["late0", "late1", "late2", "late-stream"]:
            status = httpx.get(again.url + "/status", params={"session_id": session}).json()
            assert status["conversation_length"] == 2, session
        assert httpx.get(again.url + "/status", params={"session_id": "busy"}).json()["conversation_length"] == 0


def test_unknown_model_is_a_clear_error_not_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "pure_model_api.py"), "--model", "nobody/no-such-model",
                             "--port", str(free_port()), "--db", ":memory:"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "nobody/no-such-model" in result.stderr and "Traceback" not in result.stderr


def test_start_script_flags(tmp_path):
    bad = subprocess.run([str(ROOT / "start_api.sh"), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
    port = free_port()
    process = subprocess.Popen([str(ROOT / "start_api.sh"), "--demo", "--port", str(port),
                                "--db", str(tmp_path / "c.sqlite3")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/status").json()["model_name"] == "demo"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
