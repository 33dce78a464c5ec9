"""Whose conversations are whose: the owner id stored beside each conversation is a keyed hash of
the API key with the database's own secret, not a plain hash anyone can test keys against; data
stored under the old plain ids stays with its key."""

import hashlib

from conftest import make_client, wait_healthy

from pure_model_api.conversations import Message, SqliteStore

KEY = "sk-owner-test"


def owners(db) -> set[str]:
    store = SqliteStore(db)
    with store._transaction() as run:
        found = {row[0] for row in run("SELECT owner FROM conversations")}
    store.close()
    return found


def test_owner_ids_are_keyed_per_database_and_old_ids_are_adopted(tiny_models, tmp_path):
    legacy = hashlib.sha256(KEY.encode()).hexdigest()[:16]
    old_db = tmp_path / "old.sqlite3"
    store = SqliteStore(old_db)
    store.add_turn(legacy, "from-before", [Message("user", "kept?")], [Message("assistant", "kept.")])
    store.close()

    ids = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        with make_client(tiny_models["qwen2"], tmp_path / folder, api_key=[KEY]) as client:
            wait_healthy(client)
            client.post("/chat", json={"message": "hi", "max_tokens": 2}, headers={"Authorization": f"Bearer {KEY}"})
        ids.append(owners(tmp_path / folder / "c.sqlite3"))
    assert len(ids[0]) == 1 and ids[0] != ids[1]  # another database, another id for the same key
    assert legacy not in ids[0] | ids[1] and not any(KEY in owner for owner in ids[0] | ids[1])

    with make_client(tiny_models["qwen2"], tmp_path, api_key=[KEY], db=str(old_db)) as client:
        wait_healthy(client)
        sessions = client.get("/sessions", headers={"Authorization": f"Bearer {KEY}"}).json()["sessions"]
        assert [s["session_id"] for s in sessions] == ["from-before"]
    assert legacy not in owners(old_db)
