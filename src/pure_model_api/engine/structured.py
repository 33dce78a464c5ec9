"""Structured outputs for the engines that sample in this process (transformers, llama.cpp).

llguidance compiles a request's JSON schema against the engine's vocabulary; at each step it says
which tokens may come next, and the sampler draws only from those, so the reply parses and matches
the schema (unless max_tokens cuts it short). vLLM runs the same library as its structured-output
backend (engine/vllm), with the same options, so a schema means the same on every engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import llguidance
import numpy as np

from pure_model_api.errors import BadRequest

# Compact JSON, no whitespace between tokens: a small model cannot spend its max_tokens on blank
# lines, and the reply is the same on every engine (vLLM gets disable_any_whitespace).
JSON_OPTIONS = {"whitespace_flexible": False}


def hf_vocabulary(tokenizer, n_vocab: int, eos_ids: set[int]):
    """llguidance's view of a Hugging Face (fast) tokenizer, one entry per logit."""
    import llguidance.hf  # imports transformers: not at module level, which a GGUF server shares

    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=max(n_vocab, len(tokenizer)), eos_token=sorted(eos_ids))


def llamacpp_vocabulary(model, eos_ids: set[int]):
    """llguidance's view of a llama.cpp model's own vocabulary (no transformers): `model` is a
    llama_cpp._internals.LlamaModel."""
    import llguidance.llamacpp

    return llguidance.llamacpp.lltokenizer_from_vocab(model.vocab, n_vocab=model.n_vocab(), eos_token=sorted(eos_ids))


class OutputConstraint:
    """One request's grammar state: masks each step's logits, then takes the token drawn."""

    def __init__(self, matcher, vocab_size: int):
        self.matcher = matcher  # llguidance.LLMatcher
        self.bitmask = np.zeros((vocab_size + 31) // 32, dtype=np.int32)  # one bit per token

    def allowed(self, size: int) -> np.ndarray:
        """Which of `size` tokens may come next. Until the reply is complete some token may (the
        end of turn, once the JSON is whole); rows past the tokenizer's vocabulary never."""
        self.matcher.unsafe_compute_mask_ptr(self.bitmask.ctypes.data, self.bitmask.nbytes)
        allowed = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little").astype(bool)
        if allowed.size < size:
            allowed = np.concatenate([allowed, np.zeros(size - allowed.size, dtype=bool)])
        return allowed[:size]

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with every token the grammar does not allow next at -inf (a copy)."""
        return np.where(self.allowed(logits.size), logits, -np.inf).astype(np.float32)

    def accept(self, token: int) -> bool:
        """Take the token drawn; False (and the matcher in its error state) only if it was not allowed."""
        return self.matcher.consume_token(token)

    @property
    def complete(self) -> bool:
        """Nothing can follow: the reply is whole."""
        return self.matcher.is_stopped()


class Grammars:
    """Compiles schemas for one engine's vocabulary. The llguidance tokenizer is built on the first
    structured request (about a second for a 50,000-token vocabulary), in the caller's worker thread."""

    def __init__(self, make_tokenizer: Callable[[], object]):
        self._make_tokenizer = make_tokenizer
        self._tokenizer = None
        self._lock = threading.Lock()

    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._make_tokenizer()
            return self._tokenizer

    def constraint(self, schema: str) -> OutputConstraint:
        """The schema was checked where the request was read (protocol/structured.py); building
        the matcher compiles it once more, for this vocabulary, and reports what it cannot take."""
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        except ValueError as error:  # not a JSON object
            raise BadRequest(f"the JSON schema cannot be enforced: {error}") from error
        tokenizer = self.tokenizer()
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise BadRequest(f"the JSON schema cannot be enforced: {matcher.get_error()}")
        constraint = OutputConstraint(matcher, tokenizer.vocab_size)
        opening = constraint.allowed(tokenizer.vocab_size)
        opening[tokenizer.eos_tokens] = False
        if not opening.any():  # at most an empty reply: no JSON value matches the schema
            raise BadRequest("the JSON schema cannot be enforced: no value matches it")
        return constraint
