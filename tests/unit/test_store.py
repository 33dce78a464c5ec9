import sqlite3

from pure_model_api.conversations import ConversationStore, Round


def test_rounds_survive_reopening(tmp_path):
    path = tmp_path / "c.sqlite3"
    store = ConversationStore(path)
    store.add_round("", "s1", Round("hello", "hi there"))
    store.close()
    reopened = ConversationStore(path)
    assert reopened.rounds("", "s1") == [Round("hello", "hi there")]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_window_holds_at_most_20_rounds_and_drops_the_oldest_half_at_once(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3", max_rounds=20)
    kept_counts = []
    for i in range(45):
        store.add_round("", "s", Round(f"q{i}", f"a{i}"))
        kept_counts.append(len(store.rounds("", "s")))
    assert max(kept_counts) == 20
    assert kept_counts[:21] == [*range(1, 21), 11]  # the 21st round drops rounds 0-9 at once
    assert kept_counts[21:31] == [*range(12, 21), 11]  # then the start stays put for 10 turns
    kept = store.rounds("", "s")
    assert [r.user for r in kept] == [f"q{i}" for i in range(30, 45)]  # newest, in order
    rows = sqlite3.connect(tmp_path / "c.sqlite3").execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
    assert rows == 15  # trimmed on disk too, so a long conversation stays small


def test_reset_clears_one_conversation_only(tmp_path):
    store = ConversationStore(":memory:")
    store.add_round("", "a", Round("1", "one"))
    store.add_round("", "b", Round("2", "two"))
    assert store.reset("", "a") == 1
    assert store.rounds("", "a") == []
    assert store.rounds("", "b") == [Round("2", "two")]
    assert store.count_conversations() == 1


def test_owners_never_see_each_others_conversations():
    store = ConversationStore(":memory:")
    store.add_round("key-a", "shared-name", Round("secret", "kept"))
    assert store.rounds("key-b", "shared-name") == []
    assert store.reset("key-b", "shared-name") == 0
    assert store.rounds("key-a", "shared-name") == [Round("secret", "kept")]


def test_unicode_round_trips(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    store.add_round("", "zh", Round("你好！", "你好 👋"))
    assert store.rounds("", "zh") == [Round("你好！", "你好 👋")]
