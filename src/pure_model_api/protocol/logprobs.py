"""Log-probabilities as OpenAI's replies carry them: chat's per-token entries with their top
alternatives, and the legacy parallel lists of /v1/completions."""

from __future__ import annotations

from pure_model_api.protocol.reply import Reply


class TopLogprob(Reply):
    token: str
    logprob: float
    bytes: list[int]

    @classmethod
    def of(cls, token: str, logprob: float) -> TopLogprob:
        return cls(token=token, logprob=_finite(logprob), bytes=list(token.encode()))


class TokenLogprobObject(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(Reply):
    """A chat choice's `logprobs`: one entry per reply token."""

    content: list[TokenLogprobObject]
    refusal: None = None

    @classmethod
    def of(cls, entries) -> ChatLogprobs:
        return cls(content=[TokenLogprobObject(**TopLogprob.of(e.token, e.logprob).model_dump(),
                                               top_logprobs=[TopLogprob.of(t, v) for t, v in e.top])
                            for e in entries])


class CompletionLogprobs(Reply):
    """A completion choice's `logprobs`, in the legacy shape: parallel lists, offsets into the text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]

    @classmethod
    def of(cls, entries, offset: int = 0) -> CompletionLogprobs:
        offsets = []
        for entry in entries:
            offsets.append(offset)
            offset += len(entry.token)
        return cls(tokens=[e.token for e in entries], token_logprobs=[_finite(e.logprob) for e in entries],
                   top_logprobs=[{t: _finite(v) for t, v in e.top} for e in entries], text_offset=offsets)


def _finite(logprob: float) -> float:
    """JSON has no -Infinity: an impossible token is -9999.0, as vLLM's server writes it."""
    return max(logprob, -9999.0)
