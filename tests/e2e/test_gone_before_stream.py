"""A client that sends a streaming request and leaves before the first byte of the answer: the
generation it started ends with it, on every engine and every streaming surface, and the server
serves the next client. Each request here would generate for minutes if nothing stopped it."""

import json
import socket
import time

import httpx
import pytest

MAX_TOKENS = 4000
COUNTING = "Count with me: 1, 2, 3, 4,"  # the demo model counts on and on, greedily
BODIES = {
    "/v1/completions": {"model": "demo", "prompt": COUNTING, "max_tokens": MAX_TOKENS, "stream": True,
                        "temperature": 0},
    "/v1/chat/completions": {"model": "demo", "max_tokens": MAX_TOKENS, "stream": True, "temperature": 0,
                             "messages": [{"role": "user", "content": "Count from 1 to 10000, one number a line."}]},
    "/chat": {"message": COUNTING, "max_tokens": MAX_TOKENS, "stream": True, "session_id": "gone",
              "temperature": 0, "ignore_eos": True},
}


def send_and_leave(port: int, path: str, body: dict) -> None:
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head + payload)
        connection.shutdown(socket.SHUT_RDWR)


def idle(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(url + "/status", timeout=30).json()
        if status["running_requests"] == 0 and status["queued_requests"] == 0:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_stream_whose_client_left_at_once_generates_nothing_more(demo_server, path):
    assert idle(demo_server.url, timeout=120)
    for _ in range(8):
        send_and_leave(demo_server.port, path, BODIES[path])
    # eight generations of 4,000 tokens would take minutes on this machine's CPU
    assert idle(demo_server.url, timeout=30), "requests whose clients left are still running or queued"
    answer = httpx.post(demo_server.url + "/v1/completions", timeout=120,
                        json={"model": "demo", "prompt": "Hello", "max_tokens": 4})
    assert answer.status_code == 200
