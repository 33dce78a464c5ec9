"""Two replicas of the service on one PostgreSQL database: turns of one conversation sent to both at
once run one after the other in arrival order and are all stored; a replica killed mid-generation
loses no completed round and leaves no half round, and the conversation goes on on the other."""

import asyncio
import signal

import httpx
import pytest
from helpers import ServerProcess, alive, descendants


@pytest.fixture
def replicas(postgres, tmp_path):
    """The demo model: its replies take seconds, so the turns really overlap."""
    url = postgres.new_database()
    servers = [ServerProcess(db=url, log_dir=tmp_path).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def turn_body(session: str, text: str, tokens: int = 24) -> dict:
    return {"message": text, "session_id": session, "max_tokens": tokens, "ignore_eos": True, "temperature": 0}


def stored_users(server, session: str) -> list[str]:
    messages = httpx.get(f"{server.url}/sessions/{session}", timeout=30).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)  # no half round
    return [m["content"] for m in messages if m["role"] == "user"]


def test_turns_sent_to_two_replicas_at_once_run_in_arrival_order(replicas):
    first, second = replicas

    async def scenario():
        async with httpx.AsyncClient(timeout=120) as client:
            sends = []
            for n in range(6):  # each arrives while the one before is still generating
                server = replicas[n % 2]
                sends.append(asyncio.create_task(client.post(server.url + "/chat", json=turn_body("shared", f"t{n}"))))
                await asyncio.sleep(0.15)
            return await asyncio.gather(*sends)

    answers = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [200] * 6
    assert stored_users(first, "shared") == [f"t{n}" for n in range(6)] == stored_users(second, "shared")
    prompts = [a.json()["usage"]["prompt_tokens"] for a in answers]
    assert prompts == sorted(prompts) and len(set(prompts)) == 6  # each turn saw every turn before it


def test_a_replica_killed_mid_generation_loses_no_round_and_the_other_goes_on(replicas):
    doomed, survivor = replicas

    async def scenario():
        async with httpx.AsyncClient(timeout=120) as client:
            done = await client.post(doomed.url + "/chat", json=turn_body("kept", "before", 8))
            killed = asyncio.create_task(client.post(doomed.url + "/chat", json=turn_body("kept", "killed", 200)))
            await doomed.engine_holds(1)  # generating, holding the conversation's lock in the database
            queued = asyncio.create_task(client.post(survivor.url + "/chat", json=turn_body("kept", "after", 8)))
            await asyncio.sleep(0.5)
            assert not queued.done()  # waits for the conversation, held by the other replica
            children = descendants(doomed.process.pid)
            doomed.process.send_signal(signal.SIGKILL)
            lost = await asyncio.gather(killed, return_exceptions=True)
            assert not alive(children)
            return done, lost[0], await queued

    done, lost, queued = asyncio.run(scenario())
    assert done.status_code == 200 and isinstance(lost, httpx.TransportError)
    assert queued.status_code == 200  # the dead replica's lock went with its connection
    assert stored_users(survivor, "kept") == ["before", "after"]
    goes_on = httpx.post(survivor.url + "/chat", json=turn_body("kept", "again", 4), timeout=60)
    assert goes_on.status_code == 200 and stored_users(survivor, "kept") == ["before", "after", "again"]
