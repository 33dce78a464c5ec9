"""Saved KV states on the llama.cpp engine, through real servers on the demo model: a conversation
whose cache left the context is restored, from RAM or from disk, even after a restart (SIGTERM or
SIGKILL), and answers as if it had never left; bad state files are skipped; a state is only ever
used for the tokens it was computed from; the disk tier keeps to its bound."""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from helpers import ServerProcess, wait_idle

SYSTEM = "You are a helpful assistant who answers briefly. " * 12  # shared by every conversation here
FIRST = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three colours."}]


def complete(server, messages, max_tokens: int = 24) -> dict:
    response = httpx.post(server.url + "/v1/chat/completions", timeout=120, json={
        "model": "demo", "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    return {"text": body["choices"][0]["message"]["content"], **body["usage"],
            "cached": body["usage"]["prompt_tokens_details"]["cached_tokens"]}


def next_turn(messages, reply: dict, question: str) -> list[dict]:
    return [*messages, {"role": "assistant", "content": reply["text"]}, {"role": "user", "content": question}]


def crowd_out(server, count: int = 4) -> None:
    """Other conversations take the context's room: the earlier ones' cells leave it."""
    for i in range(count):
        complete(server, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Count to {i + 3}."}],
                 max_tokens=8)


def tiers(server) -> dict:
    return httpx.get(server.url + "/status").json()["kv_tiers"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """No saved states, and nothing else to hold: each conversation's cache stays in its slot."""
    server = ServerProcess("--kv-ram-gb", "0", "--kv-disk-gb", "0", engine="llama.cpp",
                           db=tmp_path_factory.mktemp("reference") / "c.sqlite3").start()
    yield server
    server.stop()


@pytest.fixture
def tiered(tmp_path):
    """RAM for about one state, and a disk tier."""
    server = ServerProcess("--kv-ram-gb", "0.012", "--kv-disk-gb", "1", engine="llama.cpp",
                           db=tmp_path / "c.sqlite3")
    yield server.start()
    server.stop()


def settled(server) -> dict:
    """The tiers once the writer thread is done: a state reaches disk moments after its turn's reply."""
    deadline = time.monotonic() + 30
    while (counts := tiers(server))["pending_writes"]:
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)
    return counts


def state_files(server) -> list[Path]:
    return sorted(Path(str(server.db) + ".kv").glob("*/*.kv"))


def test_a_restored_turn_answers_as_one_that_never_left_the_context(tiered, reference):
    first = complete(tiered, FIRST)
    crowd_out(tiered)
    second_messages = next_turn(FIRST, first, "Which of them is the warmest?")
    restored = complete(tiered, second_messages)
    assert restored["cached"] >= first["prompt_tokens"] + first["completion_tokens"] - 2
    assert tiers(tiered)["ram"]["restores"] + tiers(tiered)["disk"]["restores"] >= 1

    kept = complete(reference, FIRST)
    assert kept["text"] == first["text"]
    never_left = complete(reference, second_messages)
    assert never_left["cached"] >= first["prompt_tokens"]  # its own slot
    assert restored["text"] == never_left["text"]


def test_past_the_ram_budget_states_come_back_from_disk(tiered):
    conversations = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Say {word}."}]
                     for word in ("red", "green", "blue", "yellow")]
    replies = [complete(tiered, messages) for messages in conversations]
    crowd_out(tiered)
    counts = settled(tiered)
    assert counts["ram"]["evictions"] >= 3 and counts["disk"]["states"] == 8
    again = complete(tiered, next_turn(conversations[0], replies[0], "Again."))
    assert again["cached"] >= replies[0]["prompt_tokens"] + replies[0]["completion_tokens"] - 2
    assert tiers(tiered)["disk"]["restores"] == 1


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_after_a_restart_the_next_turn_restores_from_disk(tiered, reference, stop):
    first = complete(tiered, FIRST)
    assert settled(tiered)["disk"]["states"] == 1
    if stop == "SIGKILL":
        os.kill(tiered.process.pid, signal.SIGKILL)
        tiered.process.wait()
        tiered.log.close()
    else:
        tiered.stop()
    tiered.start()
    messages = next_turn(FIRST, first, "Which of them is the warmest?")
    after = complete(tiered, messages)
    assert after["cached"] >= first["prompt_tokens"] + first["completion_tokens"] - 2
    assert tiers(tiered)["disk"]["restores"] == 1
    assert 'pure_api_kv_restores_total{tier="disk"} 1.0' in httpx.get(tiered.url + "/metrics").text
    complete(reference, FIRST)
    assert after["text"] == complete(reference, messages)["text"]


def test_bad_state_files_are_skipped_and_deleted_and_the_turn_is_right(tiered, reference, tmp_path):
    conversations = [[{"role": "system", "content": f"Conversation {n}. " + SYSTEM},
                      {"role": "user", "content": "Name three colours."}] for n in range(3)]
    replies = [complete(tiered, messages) for messages in conversations]
    tiered.stop()
    corrupt, truncated, foreign = state_files(tiered)
    data = bytearray(corrupt.read_bytes())
    data[-1000] ^= 0xFF  # one byte of the KV data
    corrupt.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-4096])
    foreign.write_bytes(b"PMAKV\x00\x01\x00" + bytes(32) + foreign.read_bytes()[40:])  # another model's
    other_model = foreign.parent.parent / "0123456789abcdef"  # another model's directory: not this one's to clean
    other_model.mkdir()
    (other_model / "state.kv").write_bytes(b"theirs")
    tiered.start()
    for messages, reply in zip(conversations, replies):
        messages = next_turn(messages, reply, "Which of them is the warmest?")
        after = complete(tiered, messages)
        complete(reference, messages[:2])
        assert after["text"] == complete(reference, messages)["text"]
    log = tiered.output()
    assert log.count("skipped and deleted") == 3, log[-3000:]
    assert not corrupt.exists() and not truncated.exists() and not foreign.exists()
    assert (other_model / "state.kv").read_bytes() == b"theirs"


def test_conversations_sharing_a_system_prompt_never_get_each_others_state(tiered):
    a = complete(tiered, FIRST)
    crowd_out(tiered)
    other = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three animals."}]
    b = complete(tiered, other)
    assert b["cached"] < a["prompt_tokens"] - 4  # the system prompt at most, not A's question or reply
    a_again = complete(tiered, next_turn(FIRST, a, "And three more?"))
    assert a_again["cached"] >= a["prompt_tokens"] + a["completion_tokens"] - 2


def test_a_diverging_history_uses_only_the_common_prefix(tiered, reference):
    first = complete(tiered, FIRST)
    crowd_out(tiered)
    edited = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three shapes."},
              {"role": "assistant", "content": first["text"]}, {"role": "user", "content": "Which is roundest?"}]
    after = complete(tiered, edited)
    assert after["cached"] < first["prompt_tokens"] - 4  # up to where the question changed
    assert after["text"] == complete(reference, edited)["text"]


def test_the_disk_tier_stays_within_its_bound(tmp_path):
    server = ServerProcess("--kv-ram-gb", "0", "--kv-disk-gb", "0.02", engine="llama.cpp",
                           db=tmp_path / "c.sqlite3").start()
    try:
        for n in range(8):  # about 4 MB a state: room for 5 in 21 MB
            complete(server, [{"role": "system", "content": f"Conversation {n}. " + SYSTEM},
                              {"role": "user", "content": "Name three colours."}])
        counts = settled(server)
        assert counts["disk"]["evictions"] >= 2 and counts["disk"]["bytes"] <= 0.02 * 2**30
        assert sum(p.stat().st_size for p in state_files(server)) <= 0.02 * 2**30 + 16 * 1024
    finally:
        server.stop()


def test_after_the_window_drops_rounds_the_next_prompt_is_already_prefilled(tmp_path):
    """With 4 rounds kept, the 5th drops the oldest 2, and the next prompt begins anew. From the
    3rd round on, the engine builds the beginning the next drop will leave (the system message, the
    3rd round, then the 4th) in the background, a round a turn; once the window has dropped rounds,
    it warms the kept rounds. So a turn right after the drop finds most of its prompt warm, and a
    turn after a pause finds all of it but its own message."""
    server = ServerProcess("--max-history-rounds", "4", engine="llama.cpp", db=tmp_path / "c.sqlite3").start()
    try:
        def chat(session: str, message: str) -> dict:
            response = httpx.post(server.url + "/chat", timeout=120, json={
                "message": message, "session_id": session, "temperature": 0, "max_tokens": 24})
            assert response.status_code == 200, response.text
            return response.json()["usage"]

        for session in ("paused", "at-once"):
            usages = [chat(session, f"Round {n} of {session}. {SYSTEM} Give me one word.") for n in range(4)]
            wait_idle(server.url)  # the user reads the 4th reply: the next drop's beginning is warmed
            usages.append(chat(session, f"Round 4 of {session}. Give me one more word."))  # the drop
            if session == "paused":
                wait_idle(server.url)
            after = chat(session, f"Round 5 of {session}. And one more.")
            assert after["prompt_tokens"] < usages[-1]["prompt_tokens"]  # the window dropped two rounds
            if session == "paused":  # all but the new message was warm
                assert after["cached_tokens"] >= after["prompt_tokens"] - 20, after
            else:  # the system message and the two rounds warmed before the drop, at least
                assert after["cached_tokens"] >= 0.5 * after["prompt_tokens"], after
    finally:
        server.stop()
