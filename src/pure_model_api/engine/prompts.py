"""Chat prompts whose tokens keep their prefix from one turn to the next.

An engine with a prefix cache (vLLM) reuses the KV cache of every leading token that matches an
earlier request. A conversation's next prompt repeats the previous prompt and its reply, so it hits
the cache, but only if those tokens come out identical: tokenizing the whole rendered text can
merge tokens across the boundary where the reply was appended.

So the rendered chat is cut at message boundaries (the text after each message, and after the
opened assistant turn before each reply) and every piece is tokenized on its own. The pieces of
the earlier turns are the same text every time, so they give the same tokens. A template that does
not render prefix by prefix (one that rewrites earlier messages) falls back to tokenizing the
whole text: correct, just without the guarantee.

Message text is data, never markup. The template is rendered with a marker in place of each
message's text; the template's own text is tokenized with its special tokens recognised, and each
message's text with special tokens split into plain text. So a user who writes `<|im_start|>system`
gets those characters to the model, not a control token, and `{{ ... }}` in a message is never
template code (Jinja renders values, it does not evaluate them). A template that changes message
text beyond trimming it cannot be split this way; the renderer then tokenizes the whole text and
says so once in the log.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

# NUL never appears in a message: the API refuses it (protocol/limits.py), so it can mark one.
MARKER = "\x00{}\x00"
MARKER_PATTERN = re.compile("\x00(\\d+)\x00")


class ChatRenderer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.warned = False

    def text(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def boundaries(self, messages: list[dict]) -> list[str]:
        """The rendered text after each message, and after each assistant turn is opened; the
        last entry is the whole prompt with the assistant's turn opened."""
        cuts = []
        for count, message in enumerate(messages, start=1):
            if message["role"] == "assistant" and count > 1:
                cuts.append(self.text(messages[:count - 1], add_generation_prompt=True))
            cuts.append(self.text(messages[:count], add_generation_prompt=False))
        cuts.append(self.text(messages, add_generation_prompt=True))
        return cuts

    def render(self, messages: list[dict]) -> list[int]:
        """Token ids of `messages`, ending with the assistant's turn opened."""
        texts = [m["content"] for m in messages]
        cuts = self.boundaries([{**m, "content": MARKER.format(i)} for i, m in enumerate(messages)])
        whole = self.text(messages, add_generation_prompt=True)
        fill = self._filling(cuts[-1], texts, whole)
        if fill is None:
            return self.encode(whole)
        previous, ids = "", []
        for cut in cuts:
            if not cut.startswith(previous):  # the template rewrites earlier text: no stable pieces
                return self._encode_marked(cuts[-1], fill)
            ids += self._encode_marked(cut[len(previous):], fill)
            previous = cut
        return ids

    def _filling(self, marked: str, texts: list[str], whole: str):
        """How the template placed each message's text: as it is, or trimmed (Llama 3's templates);
        None when it does something else with it."""
        for fill in (lambda i: texts[i], lambda i: texts[i].strip()):
            if MARKER_PATTERN.sub(lambda match, fill=fill: fill(int(match.group(1))), marked) == whole:
                return fill
        if not self.warned:
            self.warned = True
            log.warning("the chat template changes message text, so special tokens written in a message cannot "
                        "be kept as plain text: the whole prompt is tokenized as one text")
        return None

    def _encode_marked(self, text: str, fill) -> list[int]:
        ids, parts = [], MARKER_PATTERN.split(text)
        for index, part in enumerate(parts):  # template text, message index, template text, ...
            ids += self.encode(part) if index % 2 == 0 else self.encode_plain(fill(int(part)))
        return ids

    def encode(self, text: str) -> list[int]:
        """The template's text: its special tokens (<|im_start|>) become control tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def encode_plain(self, text: str) -> list[int]:
        """A message's text: anything that looks like a special token stays plain text."""
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True) if text else []
