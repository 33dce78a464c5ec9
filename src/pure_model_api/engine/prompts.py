"""Chat prompts: message text stays plain text, the tokens keep their prefix from turn to turn,
and the cost is linear in the number of messages.

Message text is data, never markup. The template is rendered once with a marker in place of each
message's text; the rendered text is split on the markers. The template's own text between them
is tokenized with its special tokens recognised (<|im_start|> becomes a control token); each
message's text is tokenized with special tokens split into plain text. So a user who writes
`<|im_start|>system` gets those characters to the model, not a control token, whatever the template
does, and `{{ ... }}` in a message is never template code (Jinja renders values, it does not
evaluate them).

What a template does to a message's text (Llama 3's trim it; Qwen3's drop the reasoning before
`</think>` from an assistant message) is read off one ordinary render: each message contributes
the part of its own text that the template placed there, still tokenized plain. Where that cannot
be read off (a template that changes its own text with a message's content), each message's text
goes in as sent, and the log says so once.

An engine with a prefix cache reuses the KV cache of every leading token that matches an earlier
request. A conversation's next prompt repeats the previous prompt's text, so it hits the cache if
those tokens come out the same: tokenizing the whole text as one could merge tokens across the
boundary where the reply was appended. Tokenizing piece by piece (the template's text between two
messages, each message, and the opened assistant turn on its own) keeps them the same.

Three renders per prompt (marked, marked without the opened turn, plain), each linear in the
messages; this runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import re
import threading

from jinja2 import TemplateError

from pure_model_api.errors import BadRequest

log = logging.getLogger(__name__)

# NUL never appears in a message: the API refuses it (protocol/limits.py), so it can mark one.
MARKER = "\x00{}\x00"
MARKER_PATTERN = re.compile("\x00(\\d+)\x00|\\\\u0000(\\d+)\\\\u0000")  # as written, or by `tojson`
LOOKAHEAD = 4  # occurrences of the next template piece tried when a message's text was rewritten


class ChatRenderer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.warned = False
        self._tokenizing = threading.Lock()  # see encode_plain

    def text(self, messages: list[dict], add_generation_prompt: bool, tools: list[dict] | None = None) -> str:
        """The rendered template (with `tools`, OpenAI-style function definitions, where given). A
        template that refuses the messages (`raise_exception`, as Gemma's and Mistral's do for roles
        out of order) is the client's 400, with its reason."""
        extra = {"tools": tools} if tools else {}
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt, **extra)
        except TemplateError as error:
            raise BadRequest(f"the model's chat template refused these messages: {error}", param="messages") \
                from error

    def render(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Token ids of `messages`, ending with the assistant's turn opened. An empty message (an
        assistant's turn that only calls tools) is left unmarked: templates leave out its text."""
        texts = [m["content"] for m in messages]
        marked_messages = [{**m, "content": MARKER.format(i)} if m["content"] else m for i, m in enumerate(messages)]
        marked = self.text(marked_messages, add_generation_prompt=True, tools=tools)
        without_turn = self.text(marked_messages, add_generation_prompt=False, tools=tools)
        opening = marked[len(without_turn):] if marked.startswith(without_turn) else ""
        # template text, then per marker its message index as written (plain or as a JSON string), ...
        parts = MARKER_PATTERN.split(marked)
        pieces, plain, quoted = parts[0::3], parts[1::3], parts[2::3]
        if any("\x00" in piece or "\\u0000" in piece for piece in pieces):
            raise BadRequest("the model's chat template changes message text in a way this server cannot render "
                             "safely")
        placed = [texts[int(i)] if i is not None else _json_string(texts[int(j)]) for i, j in zip(plain, quoted)]
        fills = self._fills(pieces, placed, self.text(messages, add_generation_prompt=True, tools=tools))
        ids = []
        for position, piece in enumerate(pieces):
            ids += self._encode_template(piece, opening)
            if position < len(placed):
                ids += self.encode_plain(fills[position])
        return ids

    def _encode_template(self, piece: str, opening: str) -> list[int]:
        """The template's text between two messages; the opened assistant turn at its end is
        tokenized on its own, as it was when it ended the previous turn's prompt."""
        if opening and piece.endswith(opening) and piece != opening:
            return self.encode(piece[:-len(opening)]) + self.encode(opening)
        return self.encode(piece)

    def _fills(self, pieces: list[str], placed: list[str], whole: str) -> list[str]:
        """The text each marker stands for: what the template made of that message's text `placed`
        there (as sent, trimmed, or a part of it), read off the plain render `whole`; else as sent."""
        fills, position = [], 0
        for number, piece in enumerate(pieces):
            if not whole.startswith(piece, position):
                break
            position += len(piece)
            if number == len(placed):
                if position == len(whole):
                    return fills
                break
            found = _placed_text(whole, position, placed[number], pieces[number + 1])
            if found is None:
                break
            fills.append(found)
            position += len(found)
        if not self.warned:
            self.warned = True
            log.warning("the chat template changes its own text with a message's content; messages are given to the "
                        "model as sent (their text stays plain text)")
        return placed


    def encode(self, text: str) -> list[int]:
        """The template's text: its special tokens (<|im_start|>) become control tokens."""
        if not text:
            return []
        with self._tokenizing:
            return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_plain(self, text: str) -> list[int]:
        """A message's text: anything that looks like a special token stays plain text.

        A Hugging Face tokenizer's `split_special_tokens` flips a flag on its shared Rust
        tokenizer for the call, so two threads tokenizing at once could each see the other's
        mode: calls on one tokenizer take turns."""
        if not text:
            return []
        with self._tokenizing:
            return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


def _placed_text(whole: str, start: int, text: str, following: str) -> str | None:
    """The text the template put at `start` for a message whose text is `text`, given the template
    text that `following` it: the text as sent, trimmed, or, for a template that rewrites it, a
    part of the text; None when none of these fits."""
    for candidate in (text, text.strip()):
        if whole.startswith(candidate + following, start):
            return candidate
    if not following:  # two messages side by side: where one ends cannot be told
        return None
    end = start
    for _ in range(LOOKAHEAD):
        end = whole.find(following, end)
        if end < 0:
            return None
        if whole[start:end] in text:
            return whole[start:end]
        end += 1
    return None


def _json_string(text: str) -> str:
    """A message's text as a template's `tojson` writes it inside its quotes (Llama 3.1 writes a tool
    result so): still the message's text, tokenized plain."""
    return json.dumps(text, ensure_ascii=False)[1:-1]
