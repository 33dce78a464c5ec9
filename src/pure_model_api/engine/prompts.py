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
"""

from __future__ import annotations


class ChatRenderer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

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
        cuts = self.boundaries(messages)
        previous, ids = "", []
        for cut in cuts:
            if not cut.startswith(previous):  # the template rewrites earlier text: no stable pieces
                return self.encode(cuts[-1])
            ids += self.encode(cut[len(previous):])
            previous = cut
        return ids

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []
