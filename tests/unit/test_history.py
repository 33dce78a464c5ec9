from pure_model_api.conversations import Message, fit_to_context, group_rounds, messages_of
from pure_model_api.conversations.history import drop_rounds, fit_step


def rounds(n):
    return [[Message("user", f"question {i}"), Message("assistant", f"answer {i}")] for i in range(n)]


def test_messages_alternate_and_end_with_the_new_message():
    messages = messages_of(rounds(2), system_prompt="be brief", new_messages=[{"role": "user", "content": "next"}])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == "next"
    assert messages_of([], None, [{"role": "user", "content": "hi"}]) == [{"role": "user", "content": "hi"}]


def test_rounds_start_at_user_messages():
    items = [Message("system", "s"), Message("user", "a"), Message("assistant", "b"), Message("user", "c"),
             Message("user", "d"), Message("assistant", "e")]
    assert [[m.text for m in r] for r in group_rounds(items)] == [["s", "a", "b"], ["c"], ["d", "e"]]


def test_everything_is_kept_when_it_fits():
    history = rounds(5)
    assert fit_to_context(history, lambda kept: True) == history


def test_oldest_rounds_are_dropped_first():
    history = rounds(10)
    kept = fit_to_context(history, lambda kept: len(kept) <= 3)
    assert kept == history[-3:]


def test_none_when_even_the_bare_message_does_not_fit():
    assert fit_to_context(rounds(3), lambda kept: False) is None


def test_empty_history_fits_when_only_the_message_fits():
    assert fit_to_context(rounds(4), lambda kept: not kept) == []


def test_with_a_step_the_history_starts_at_a_multiple_of_it():
    history = rounds(20)
    kept = fit_to_context(history, lambda kept: len(kept) <= 13, step=5)
    assert kept == history[10:]  # 13 would fit, but the start moves in steps of 5
    assert fit_to_context(history, lambda kept: len(kept) <= 3, step=5) == history[17:]  # fewer than a step


def test_the_start_stays_put_while_a_conversation_grows_within_a_step():
    budget = 12  # rounds that fit the context
    starts = []
    for n in range(12, 20):
        kept = fit_to_context(rounds(n), lambda kept: len(kept) <= budget, step=5)
        starts.append(n - len(kept))
    assert starts == [0, 5, 5, 5, 5, 5, 10, 10]


def test_steps_divide_the_drop_so_they_stay_aligned():
    for window in (1, 2, 3, 5, 10, 20, 40):
        assert drop_rounds(window) % fit_step(window) == 0 and 1 <= drop_rounds(window) <= window
