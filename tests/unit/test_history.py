from pure_model_api.conversations import Message, fit_to_context, group_rounds, messages_of
from pure_model_api.conversations.history import drop_rounds, fit_step, unanswered_results


def rounds(n):
    return [[Message("user", f"question {i}"), Message("assistant", f"answer {i}")] for i in range(n)]


def test_messages_alternate_and_end_with_the_new_message():
    messages = messages_of(rounds(2), system_prompt="be brief", new_messages=[Message("user", "next")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == "next"
    assert messages_of([], None, [Message("user", "hi")]) == [{"role": "user", "content": "hi"}]


def agent_round(n: int) -> list[Message]:
    """A user message, the model's text and two calls, their results, the final answer."""
    return [Message("user", f"plan trip {n}"), Message("assistant", "Checking."),
            Message("function_call", '{"city": "Lyon"}', extra={"call_id": f"call_{n}a", "name": "weather"}),
            Message("function_call", '{"city": "Nice"}', extra={"call_id": f"call_{n}b", "name": "weather"}),
            Message("function_call_output", "Sunny", extra={"call_id": f"call_{n}a"}),
            Message("function_call_output", "Rain", extra={"call_id": f"call_{n}b"}),
            Message("assistant", "Go to Lyon.")]


def test_a_round_holds_an_agents_calls_and_results():
    assert [len(r) for r in group_rounds(agent_round(0) + agent_round(1))] == [7, 7]


def test_calls_join_their_assistant_message_and_results_are_tool_messages():
    messages = messages_of([agent_round(0)])
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[1]["content"] == "Checking."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_0a", "call_0b"]
    assert messages[1]["tool_calls"][1]["function"] == {"name": "weather", "arguments": '{"city": "Nice"}'}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_0a", "content": "Sunny"}
    alone = messages_of([[Message("user", "x"), agent_round(0)[2]]])
    assert alone[1] == {"role": "assistant", "content": "", "tool_calls": [alone[1]["tool_calls"][0]]}


def test_a_result_must_answer_a_call_in_the_history_or_the_input():
    history = agent_round(0)[:4]
    answer = [Message("function_call_output", "x", extra={"call_id": "call_0a"})]
    assert unanswered_results(history, answer) == []
    stray = [Message("function_call_output", "x", extra={"call_id": "call_9"})]
    assert unanswered_results(history, stray) == ["call_9"]
    chat = [Message("assistant", "", extra={"tool_calls": [{"id": "call_c", "type": "function",
                                                             "function": {"name": "f", "arguments": "{}"}}]}),
            Message("tool", "ok", extra={"tool_call_id": "call_c"}), Message("tool", "ok", extra={"tool_call_id": "d"})]
    assert unanswered_results([], chat) == ["d"]


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
