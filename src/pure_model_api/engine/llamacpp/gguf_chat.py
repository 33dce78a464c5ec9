"""A GGUF model's own tokenizer and chat template, for the llama.cpp engine.

The template comes from the file's metadata (`tokenizer.chat_template`) and is rendered in a
sandboxed, immutable Jinja environment, as transformers renders templates: a template can read the
messages it is given and nothing else. The vocabulary is llama.cpp's, so the token ids the service
builds are exactly the ones the model was trained with.
"""

from __future__ import annotations

import datetime
import json

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pure_model_api.engine.loading import END_OF_TURN_TOKENS
from pure_model_api.errors import ModelLoadError


def _raise(message: str):
    raise TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    """JSON as transformers' templates write it (Jinja's own `tojson` sorts keys and escapes HTML)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class GgufTokenizer:
    """What the service's prompt and text code ask of a tokenizer, over a llama.cpp model."""

    def __init__(self, model, metadata: dict[str, str]):
        self.model = model  # llama_cpp._internals.LlamaModel
        template = metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelLoadError("the GGUF file has no chat template (tokenizer.chat_template): "
                                 "an instruct/chat model is needed")
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.filters["tojson"] = _tojson
        environment.globals.update(raise_exception=_raise,
                                   strftime_now=lambda f: datetime.datetime.now().strftime(f))
        try:
            self.template = environment.from_string(template)
        except TemplateError as error:
            raise ModelLoadError(f"the GGUF file's chat template does not parse: {error}") from error
        self.bos_token = self._text(model.token_bos())
        self.eos_token = self._text(model.token_eos())
        self.chat_template = template
        try:  # a template that cannot render a plain exchange is a startup error, not a 500 later
            self.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
        except TemplateError as error:
            raise ModelLoadError(f"the GGUF file's chat template does not render: {error}") from error

    def _text(self, token: int) -> str:
        return self.model.token_get_text(token) if token >= 0 else ""

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = False, tools: list[dict] | None = None) -> str:
        if tokenize:
            raise ValueError("GgufTokenizer renders text; tokenize it with encode()")
        extra = {"tools": tools} if tools else {}
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=self.bos_token, eos_token=self.eos_token, **extra)

    def encode(self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False) -> list[int]:
        """Special tokens written in `text` (the template's <|im_start|>) become control tokens,
        unless split_special_tokens (a message's text, which stays plain)."""
        return self.model.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=not split_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.model.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", errors="replace")

    def end_of_turn_ids(self) -> set[int]:
        ids = {self.model.token_eos(), self.model.token_eot()}
        for text in END_OF_TURN_TOKENS:
            tokens = self.model.tokenize(text.encode(), add_bos=False, special=True)
            if len(tokens) == 1:
                ids.add(tokens[0])
        return {i for i in ids if i >= 0}
