"""Rounds, and the rules for how much of a conversation a prompt carries.

Two limits apply, and both move the start of the history in steps, not one round at a time, so
that a conversation's prompt keeps the same beginning for many turns (an engine's prefix cache
reuses the KV cache of that beginning; a prompt whose start shifts every turn must be prefilled
again whole every turn):

- The window: a conversation keeps at most `max_rounds` rounds (20). When a new round would make
  it `max_rounds + 1`, the oldest `drop_rounds(max_rounds)` (half the window, 10) are dropped at
  once. So the model sees between 11 and 20 earlier rounds, and the beginning of the prompt changes
  once every 10 turns rather than on every turn.
- The context: when the kept rounds and the new message do not fit the model's context, the
  history starts at the first multiple of `fit_step(max_rounds)` (5) rounds that fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Round:
    """One user message and the reply to it."""

    user: str
    assistant: str


def drop_rounds(max_rounds: int) -> int:
    """How many of the oldest rounds go at once when the window is full."""
    return max(1, max_rounds // 2)


def fit_step(max_rounds: int) -> int:
    """The step in which the history's start moves to fit the context; it divides drop_rounds,
    so the steps stay aligned after the window drops rounds."""
    drop = drop_rounds(max_rounds)
    return drop // 2 if drop % 2 == 0 else drop


def messages_of(rounds: list[Round], system_prompt: str | None = None, new_message: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for r in rounds:
        messages += [{"role": "user", "content": r.user}, {"role": "assistant", "content": r.assistant}]
    if new_message is not None:
        messages.append({"role": "user", "content": new_message})
    return messages


def fit_to_context(rounds: list[Round], fits: Callable[[list[Round]], bool], step: int = 1) -> list[Round] | None:
    """The newest rounds for which `fits` holds, starting at a multiple of `step` (or none at all),
    or None when even no history fits. `fits` is monotone: fewer rounds never make a prompt longer,
    so bisect over the allowed starts."""
    starts = [*range(0, len(rounds), step), len(rounds)]
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
