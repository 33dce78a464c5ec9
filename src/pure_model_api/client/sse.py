"""Reading server-sent events: the one parser of the client, the tests and the benchmarks (the
chat page has its own, in JavaScript). Each event's data is one JSON line, or `[DONE]` on /v1."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator


class EventParser:
    """Fed line by line (from a sync or an async stream); `feed` returns (event name, data) at
    each `data:` line, the name being `message` where no `event:` line came before it."""

    def __init__(self):
        self.name = "message"

    def feed(self, line: str) -> tuple[str, dict | str] | None:
        if line.startswith("event:"):
            self.name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            raw = line.split(":", 1)[1].strip()
            name, self.name = self.name, "message"
            return name, raw if raw == "[DONE]" else json.loads(raw)
        return None


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, dict | str]]:
    parser = EventParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
