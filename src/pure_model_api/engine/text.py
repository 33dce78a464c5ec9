"""Token ids to reply text: incremental decoding that never splits a character, and stop strings."""

from __future__ import annotations


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas.

    Decodes a small window of recent tokens and emits only once the window no longer ends in an
    incomplete UTF-8 sequence (U+FFFD), so byte-fallback tokens of Chinese or emoji come out whole.
    A character is at most four bytes, so text is held back for at most `MAX_HELD` tokens: a reply
    that really writes U+FFFD gets it, and the window (so each step's cost) stays bounded.
    `flush` gives what is still held once the reply ends.
    """

    MAX_HELD = 4

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        complete = len(self.ids) - self.read_offset >= self.MAX_HELD
        return self._emit(complete)

    def flush(self) -> str:
        return self._emit(complete=True)

    def _emit(self, complete: bool) -> str:
        decode = self.tokenizer.decode
        prefix_text = decode(self.ids[self.prefix_offset:self.read_offset], skip_special_tokens=True)
        new_text = decode(self.ids[self.prefix_offset:], skip_special_tokens=True)
        if len(new_text) > len(prefix_text) and (complete or not new_text.endswith("\ufffd")):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return new_text[len(prefix_text):]
        return ""


class StopStringFilter:
    """Cuts the reply at the first stop string, matched on text across token boundaries.

    Text that could be the start of a stop string is held back until it is known not to be one.
    """

    def __init__(self, stop: tuple[str, ...]):
        self.stop = tuple(s for s in stop if s)
        self.held = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def push(self, delta: str) -> str:
        if not self.stop:
            return delta
        text = self.held + delta
        found = [(i, s) for s in self.stop if (i := text.find(s)) >= 0]
        if found:
            cut, self.matched = min(found)
            self.held = ""
            self.stopped = True
            return text[:cut]
        keep = self._longest_stop_prefix_suffix(text)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        best = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best
