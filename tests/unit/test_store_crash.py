"""A process killed in the middle of writing a round: the database opens, every earlier round is
there whole, and the interrupted round is not there at all (one transaction per round)."""

import multiprocessing
import os
import signal
import sqlite3

from pure_model_api.conversations import Message
from pure_model_api.conversations import SqliteStore as ConversationStore


def write_rounds_then_die_mid_round(db: str, rounds_before: int) -> None:
    store = ConversationStore(db, max_rounds=20)
    for n in range(rounds_before):
        store.add_turn("", "chat", [Message("user", f"question {n}")], [Message("assistant", f"answer {n}")])
    real_insert = store._insert

    def insert_then_die(*args, is_output=False):
        stored = real_insert(*args, is_output=is_output)
        if is_output:  # the user's item and the reply are written; the commit is next
            os.kill(os.getpid(), signal.SIGKILL)
        return stored

    store._insert = insert_then_die
    store.add_turn("", "chat", [Message("user", "the last question")], [Message("assistant", "never stored")])


def test_sigkill_inside_a_rounds_transaction_leaves_no_half_round(tmp_path):
    db = str(tmp_path / "c.sqlite3")
    child = multiprocessing.get_context("spawn").Process(target=write_rounds_then_die_mid_round, args=(db, 3))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = ConversationStore(db, max_rounds=20)
    texts = [(m.role, m.text) for m in store.messages("", "chat")]
    assert texts == [(role, f"{kind} {n}") for n in range(3) for role, kind in
                     (("user", "question"), ("assistant", "answer"))]
    store.add_turn("", "chat", [Message("user", "after the restart")], [Message("assistant", "fine")])
    assert len(store.messages("", "chat")) == 8
