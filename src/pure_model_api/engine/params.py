"""What a caller asks of the engine, and the events it gets back. Plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass

GREEDY_BELOW = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 512
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    repetition_penalty: float = 1.0  # HF-style, over prompt and reply tokens
    presence_penalty: float = 0.0  # OpenAI-style, over reply tokens
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks: every reply runs to max_tokens
    json_schema: str | None = None  # the reply is JSON matching this schema (JSON text); see structured.py
    logprobs: int | None = None  # each reply token's log-probability and this many likeliest alternatives

    @property
    def greedy(self) -> bool:
        """A temperature this small is greedy (as vLLM rounds it): dividing logits by it overflows."""
        return self.temperature < GREEDY_BELOW

    @property
    def needs_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


@dataclass(frozen=True)
class TokenLogprob:
    """One reply token: its text, its log-probability under the model's own distribution (before
    temperature, penalties and any grammar, as vLLM reports by default), and the likeliest
    alternatives as (text, log-probability), most likely first."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New reply text; never splits a character. `logprobs`: the tokens it came from, where asked
    (text held back for a whole character or a stop string comes with the later delta's tokens)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    """The last event of a request."""

    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float = 0.0
    time_per_output_token_s: float = 0.0
    cached_tokens: int = 0  # prompt tokens whose KV cache the engine reused (0 where it cannot tell)
    logprobs: tuple[TokenLogprob, ...] | None = None  # every reply token's, where asked
    stop_string: str | None = None  # the stop string that ended the reply (finish_reason "stop")
    tool_calls: tuple[ToolCall, ...] = ()  # the functions the reply calls (finish_reason "tool_calls")


@dataclass(frozen=True)
class ToolCall:
    """A function call in a reply: `arguments` is JSON text (an object), as OpenAI's APIs carry it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A streamed piece of call `index` of the reply: its id and name once, then pieces of its
    arguments that concatenate to the call's `arguments`."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
