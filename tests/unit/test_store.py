"""The store's behaviour on SQLite files. The tests that take `open_db` run again on a real
PostgreSQL server in tests/e2e/test_store_on_postgresql.py, so this tier needs no database server."""

import sqlite3

import pytest

from pure_model_api.conversations import Message, SqliteStore, open_store, schema


@pytest.fixture
def open_db(tmp_path):
    """Opens a store on one fresh database; call it again to reopen the same database."""
    yield from store_opener(str(tmp_path / "c.sqlite3"))


def store_opener(url: str):
    """An opener of stores on `url`, closing them all at the end (a fixture's body)."""
    opened = []

    def opener(max_rounds: int = 20):
        opened.append(open_store(url, max_rounds))
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


def count_items(store) -> int:
    with store._transaction() as run:
        return run("SELECT COUNT(*) FROM items").fetchone()[0]


def turn(store, owner, cid, user, reply, response=None):
    return store.add_turn(owner, cid, [Message("user", user)], [Message("assistant", reply)], response)


def texts(store, owner, cid):
    return [(m.role, m.text) for m in store.messages(owner, cid)]


def test_turns_survive_reopening(open_db):
    store = open_db()
    turn(store, "", "s1", "hello", "hi there")
    store.close()
    reopened = open_db()
    assert texts(reopened, "", "s1") == [("user", "hello"), ("assistant", "hi there")]


def test_a_sqlite_file_is_in_wal_mode(tmp_path):
    SqliteStore(tmp_path / "c.sqlite3").close()
    assert sqlite3.connect(tmp_path / "c.sqlite3").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_version_1_database_is_migrated_with_its_rounds(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""CREATE TABLE rounds (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,
        session_id TEXT NOT NULL, user_message TEXT NOT NULL, reply TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL);
        INSERT INTO rounds (owner, session_id, user_message, reply, created_at) VALUES ('', 'old', 'q1', 'a1', 1.0);
        INSERT INTO rounds (owner, session_id, user_message, reply, created_at) VALUES ('', 'old', 'q2', 'a2', 2.0);""")
    old.commit()
    old.close()
    store = SqliteStore(path)
    assert texts(store, "", "old") == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
    store.close()
    assert texts(SqliteStore(path), "", "old")[-1] == ("assistant", "a2")  # migrated once, not twice


def test_a_version_2_database_gains_the_later_migrations_and_keeps_its_conversations(tmp_path):
    """Version 2 had the tables, and neither /sessions' index (3) nor the owner-id secret (4)."""
    path = tmp_path / "v2.sqlite3"
    old = sqlite3.connect(path)
    for statement in next(schema.pending("sqlite", set()))[1]:
        old.execute(statement)
    old.execute("INSERT INTO conversations (owner, id, created_at, updated_at) VALUES ('', 'kept', 1.0, 1.0)")
    old.execute("INSERT INTO items (id, owner, conversation_id, role, text, created_at) "
                "VALUES ('msg_1', '', 'kept', 'user', 'still here', 1.0)")
    old.execute("PRAGMA user_version = 2")
    old.commit()
    old.close()
    store = SqliteStore(path)
    assert texts(store, "", "kept") == [("user", "still here")]
    assert len(store.owner_secret()) >= 32  # the service_secrets table exists
    store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST + 1
    assert check.execute("SELECT 1 FROM sqlite_master WHERE name = 'conversations_by_use'").fetchone()


def test_the_window_holds_at_most_20_rounds_and_drops_the_oldest_half_at_once(open_db):
    store = open_db(max_rounds=20)
    kept_counts = []
    for i in range(45):
        turn(store, "", "s", f"q{i}", f"a{i}")
        kept_counts.append(len(store.messages("", "s")) // 2)
    assert max(kept_counts) == 20
    assert kept_counts[:21] == [*range(1, 21), 11]  # the 21st round drops rounds 0-9 at once
    assert kept_counts[21:31] == [*range(12, 21), 11]  # then the start stays put for 10 turns
    kept = [text for role, text in texts(store, "", "s") if role == "user"]
    assert kept == [f"q{i}" for i in range(30, 45)]  # newest, in order
    assert count_items(store) == 30  # trimmed on disk too, so a long conversation stays small


def test_reset_clears_one_conversation_only(open_db):
    store = open_db()
    turn(store, "", "a", "1", "one")
    turn(store, "", "b", "2", "two")
    assert store.reset("", "a") == 1
    assert store.messages("", "a") == []
    assert texts(store, "", "b") == [("user", "2"), ("assistant", "two")]
    assert store.count_conversations() == 1


def test_owners_never_see_each_others_conversations_or_responses(open_db):
    store = open_db()
    turn(store, "key-a", "shared-name", "secret", "kept", response={"id": "resp_1", "object": "response"})
    assert store.messages("key-b", "shared-name") == []
    assert store.reset("key-b", "shared-name") == 0
    assert store.conversation("key-b", "shared-name") is None
    assert store.response("key-b", "resp_1") is None and not store.delete_response("key-b", "resp_1")
    assert store.chain("key-b", "resp_1") == []
    assert texts(store, "key-a", "shared-name") == [("user", "secret"), ("assistant", "kept")]


def test_a_chain_of_responses_is_its_history_in_order(open_db):
    store = open_db()
    store.add_turn("", None, [Message("user", "one")], [Message("assistant", "1")], {"id": "r1"})
    store.add_turn("", None, [Message("user", "two")], [Message("assistant", "2")],
                   {"id": "r2", "previous_response_id": "r1"})
    assert [m.text for m in store.chain("", "r2")] == ["one", "1", "two", "2"]
    assert [m.text for m in store.response_items("", "r2", output=False)] == ["two"]
    assert store.delete_response("", "r1")
    assert [m.text for m in store.chain("", "r2")] == ["two", "2"]


def test_deleting_an_item_or_conversation_keeps_the_response_record(open_db):
    store = open_db()
    created = store.create_conversation("", {"topic": "x"}, [Message("user", "first")])
    cid = created["id"]
    stored = store.add_turn("", cid, [Message("user", "q")], [Message("assistant", "a")], {"id": "r1"})
    assert [m.text for m in store.messages("", cid)] == ["first", "q", "a"]
    assert store.delete_item("", cid, stored[0].id)
    assert [m.text for m in store.messages("", cid)] == ["first", "a"]
    assert [m.text for m in store.response_items("", "r1", output=False)] == ["q"]
    assert store.delete_conversation("", cid) and store.conversation("", cid) is None
    assert store.response("", "r1") == {"id": "r1"}


def test_conversations_are_listed_newest_used_first_one_page_at_a_time(open_db):
    store = open_db()
    for n in range(25):
        turn(store, "", f"c{n:02}", f"question {n}", "answer")
    turn(store, "other", "theirs", "not mine", "answer")
    turn(store, "", "c03", "used again", "answer")  # moves to the top
    pages, after = [], None
    while True:
        page, more = store.list_conversations("", after, 10)
        pages.append([row["id"] for row in page])
        if not more:
            break
        after = page[-1]["id"]
    assert [len(p) for p in pages] == [10, 10, 5]
    listed = [cid for p in pages for cid in p]
    assert listed == ["c03"] + [f"c{n:02}" for n in range(24, -1, -1) if n != 3]
    first = store.list_conversations("", None, 1)[0][0]
    assert (first["messages"], first["title"]) == (4, "question 3")
    assert store.list_conversations("", "no-such-id", 2)[0] == store.list_conversations("", None, 2)[0]


def test_unicode_round_trips(open_db):
    store = open_db()
    turn(store, "", "zh", "你好！", "你好 👋")
    assert texts(store, "", "zh") == [("user", "你好！"), ("assistant", "你好 👋")]


def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path):
    """SQLite refuses one COMMIT (here through its authorizer; in life SQLITE_BUSY or a full disk):
    that turn is not stored, and the shared connection is not left inside the transaction, where
    every later write would fail with 'cannot start a transaction within a transaction'."""
    store = SqliteStore(tmp_path / "c.sqlite3")
    turn(store, "", "chat", "first", "one")

    def refuse_commit(action, arg1, *_):
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT" else sqlite3.SQLITE_OK

    store._db.set_authorizer(refuse_commit)
    with pytest.raises(sqlite3.DatabaseError):
        turn(store, "", "chat", "second", "two")
    store._db.set_authorizer(None)
    turn(store, "", "chat", "third", "three")
    assert texts(store, "", "chat") == [("user", "first"), ("assistant", "one"), ("user", "third"),
                                        ("assistant", "three")]


def test_a_database_locked_by_another_process_is_unavailable_not_a_fault(tmp_path):
    """Another writer holding the file past the busy timeout: a 503 (StoreUnavailable), then the
    next write, once the file is free, goes through."""
    from pure_model_api.errors import StoreUnavailable

    store = SqliteStore(tmp_path / "c.sqlite3")
    other = sqlite3.connect(tmp_path / "c.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    store._db.execute("PRAGMA busy_timeout = 200")
    with pytest.raises(StoreUnavailable):
        turn(store, "", "chat", "blocked", "no")
    other.execute("ROLLBACK")
    turn(store, "", "chat", "free", "yes")
    assert texts(store, "", "chat") == [("user", "free"), ("assistant", "yes")]


def test_an_agents_calls_and_results_are_stored_and_windowed_as_rounds(open_db):
    """A function call keeps its call_id and name across reopening; a round with calls and results
    is one round of the 20-round window."""
    store = open_db(max_rounds=4)
    for i in range(6):
        call = Message("function_call", f'{{"step": {i}}}', id=f"fc_{i}", extra={"call_id": f"call_{i}", "name": "f"})
        store.add_turn("", "agent", [Message("user", f"q{i}")], [call], None)
        store.add_turn("", "agent", [Message("function_call_output", f"r{i}", extra={"call_id": f"call_{i}"})],
                       [Message("assistant", f"a{i}")], None)
    store.close()
    items = open_db(max_rounds=4).messages("", "agent")
    assert [m.text for m in items if m.role == "user"] == ["q2", "q3", "q4", "q5"]  # the 5th round dropped 2
    call = next(m for m in items if m.role == "function_call")
    assert (call.id, call.text, call.extra) == ("fc_2", '{"step": 2}', {"call_id": "call_2", "name": "f"})
    assert [m.role for m in items[:4]] == ["user", "function_call", "function_call_output", "assistant"]
    assert items[2].extra == {"call_id": "call_2"} and items[2].id.startswith("fco_")
