"""Messages, rounds, and the rules for how much of a conversation a prompt carries.

A conversation is a list of items: messages, function calls and their outputs. A round starts at a
user message and holds what follows it up to the next user message (on /chat: the message and its
reply; for an agent: the calls, their results and the final answer too).

Two limits apply, and both move the start of the history in steps, not one round at a time, so
that a conversation's prompt keeps the same beginning for many turns (an engine's prefix cache
reuses the KV cache of that beginning; a prompt whose start shifts every turn must be prefilled
again whole every turn):

- The window: a conversation keeps at most `max_rounds` rounds (20). When a new round would make
  it `max_rounds + 1`, the oldest `drop_rounds(max_rounds)` (half the window, 10) are dropped at
  once. So the model sees between 11 and 20 earlier rounds, and the beginning of the prompt changes
  once every 10 turns rather than on every turn.
- The context: when the kept rounds and the new message do not fit the model's context, the
  history starts at the first multiple of `fit_step(max_rounds)` (5) rounds that fits (or, when
  fewer rounds than that fit, at the first round that fits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ROLES = ("system", "developer", "user", "assistant")
# Beside messages, a conversation holds function calls (text: the arguments; extra: call_id and
# name) and their outputs (text: the output; extra: call_id), the Responses API's items.
TOOL_ITEMS = ("function_call", "function_call_output")


@dataclass(frozen=True)
class Message:
    """One stored message item."""

    role: str
    text: str
    id: str = ""
    response_id: str | None = None
    created_at: float = 0.0
    extra: dict = field(default_factory=dict, compare=False)

    def as_chat(self) -> dict:
        """The message as chat templates take it; a call's or a tool result's fields from `extra`."""
        message = {"role": "system" if self.role == "developer" else self.role, "content": self.text}
        for name in ("tool_calls", "tool_call_id"):
            if name in self.extra:
                message[name] = self.extra[name]
        return message


Round = list[Message]


def group_rounds(messages: list[Message]) -> list[Round]:
    """Split a conversation into rounds, each starting at a user message (anything before the
    first user message belongs to the first round)."""
    rounds: list[Round] = []
    for message in messages:
        opens = message.role == "user" and (not rounds or any(m.role == "user" for m in rounds[-1]))
        if opens or not rounds:
            rounds.append([message])
        else:
            rounds[-1].append(message)
    return rounds


def drop_rounds(max_rounds: int) -> int:
    """How many of the oldest rounds go at once when the window is full."""
    return max(1, max_rounds // 2)


def fit_step(max_rounds: int) -> int:
    """The step in which the history's start moves to fit the context; it divides drop_rounds,
    so the steps stay aligned after the window drops rounds."""
    drop = drop_rounds(max_rounds)
    return drop // 2 if drop % 2 == 0 else drop


def messages_of(rounds: list[Round], system_prompt: str | None = None, new_messages: list[Message] | None = None,
                ) -> list[dict]:
    """Chat-template messages: the system prompt, the rounds, then the new messages."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + chat_messages([m for r in rounds for m in r] + list(new_messages or []))


def chat_messages(items: list[Message]) -> list[dict]:
    """Items as chat templates take them: a function call joins the assistant message before it
    (or opens one), as the model wrote them in one turn; a call's output is a tool message."""
    messages: list[dict] = []
    for item in items:
        if item.role == "function_call":
            call = {"id": item.extra["call_id"], "type": "function",
                    "function": {"name": item.extra["name"], "arguments": item.text}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1] = {**messages[-1], "tool_calls": [*messages[-1].get("tool_calls", []), call]}
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif item.role == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.extra["call_id"], "content": item.text})
        else:
            messages.append(item.as_chat())
    return messages


def unanswered_results(history: list[Message], inputs: list[Message]) -> list[str]:
    """The call ids of tool results in `inputs` that answer no call in the history or the inputs."""
    calls = {m.extra.get("call_id") for m in [*history, *inputs] if m.role == "function_call"}
    calls |= {c["id"] for m in [*history, *inputs] for c in m.extra.get("tool_calls", [])}
    results = [m.extra.get("call_id") or m.extra.get("tool_call_id") for m in inputs
               if m.role in ("function_call_output", "tool")]
    return [call_id for call_id in results if call_id not in calls]


def fit_to_context(rounds: list, fits: Callable[[list], bool], step: int = 1) -> list | None:
    """The newest rounds for which `fits` holds, starting at a multiple of `step` (or none at all),
    or None when even no history fits. `fits` is monotone: fewer rounds never make a prompt longer,
    so bisect over the allowed starts."""
    # Multiples of `step`, and, within the last step, every start: a history of a few long rounds
    # keeps what fits rather than nothing.
    starts = sorted({*range(0, len(rounds), step), *range(max(len(rounds) - step + 1, 0), len(rounds) + 1)})
    if not fits([]):
        return None
    low, high = -1, len(starts) - 1  # starts[high] fits; find the smallest index that fits
    while high - low > 1:
        middle = (low + high) // 2
        if fits(rounds[starts[middle]:]):
            high = middle
        else:
            low = middle
    return rounds[starts[high]:]
