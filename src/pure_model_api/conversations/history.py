"""Rounds and how much of them a prompt can carry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Round:
    """One user message and the reply to it."""

    user: str
    assistant: str


def messages_of(rounds: list[Round], system_prompt: str | None = None, new_message: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for r in rounds:
        messages += [{"role": "user", "content": r.user}, {"role": "assistant", "content": r.assistant}]
    if new_message is not None:
        messages.append({"role": "user", "content": new_message})
    return messages


def fit_to_context(rounds: list[Round], fits: Callable[[list[Round]], bool]) -> list[Round] | None:
    """The longest suffix of `rounds` (newest kept) for which `fits` holds, or None when even no
    history fits. `fits` is monotone: fewer rounds never makes a prompt longer, so bisect."""
    low, high = 0, len(rounds)  # find the smallest start index that fits
    if not fits([]):
        return None
    if fits(rounds):
        return rounds
    while high - low > 1:
        middle = (low + high) // 2
        if fits(rounds[middle:]):
            high = middle
        else:
            low = middle
    return rounds[high:]
