"""The interactive client, driven with scripted input like a person at a terminal."""

import subprocess
import sys

from helpers import ROOT, free_port


def run_client(url: str, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "api_client_example.py"), "--url", url, *args],
                          input=script, capture_output=True, text=True, timeout=180)


def test_chat_status_reset_quit(demo_server):
    result = run_client(demo_server.url, "Tell me the capital of France.\nstatus\nreset\nstatus\nquit\n",
                        "--session", "repl", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Paris" in out
    assert '"conversation_length": 2' in out and '"conversation_length": 0' in out
    assert "Conversation reset." in out and "Goodbye." in out
    assert "Traceback" not in out + result.stderr


def test_end_of_input_exits_cleanly(demo_server):
    result = run_client(demo_server.url, "status\n")
    assert result.returncode == 0 and "Goodbye." in result.stdout


def test_a_down_server_is_one_line_and_the_client_keeps_going():
    result = run_client(f"http://127.0.0.1:{free_port()}", "hello\nstatus\nquit\n")
    assert result.returncode == 0
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert len(errors) == 2 and "cannot reach the server" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_a_server_error_is_shown_and_the_client_keeps_going(demo_server):
    result = run_client(demo_server.url, "status\nquit\n", "--session", "bad session id")
    assert result.returncode == 0
    assert "error: 400" in result.stdout and "Goodbye." in result.stdout
