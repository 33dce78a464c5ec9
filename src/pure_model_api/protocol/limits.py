"""Limits every surface shares, so that hostile input is a clear 400 and never reaches the engine
or the store: text the store can keep, stop strings, seeds and metadata, as OpenAI bounds them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from pure_model_api.errors import BadRequest

# Messages (chat completions) or input items (responses) in one request. Rendering a prompt is
# linear in them, but a 1 MiB body could otherwise hold 35,000 one-letter messages.
MAX_MESSAGES = 2048
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 256
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
INT64 = 2**63

Seed = Annotated[int, Field(ge=-INT64, le=INT64 - 1)]


def check_json_text(value) -> None:
    """Every string in a parsed JSON body (keys included) must be text the store and the tokenizer
    can take: no NUL bytes, no lone UTF-16 surrogates (JSON's "\\ud800" escapes decode to those).
    Iterative, so a deep body cannot exhaust the stack here."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise BadRequest("text must not contain NUL characters (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRequest("text must be valid Unicode: it contains a lone surrogate "
                         f"(\\u{ord(text[error.start]):04x})") from error


def _stop_ok(stop: str | list[str] | None) -> str | list[str] | None:
    strings = [stop] if isinstance(stop, str) else list(stop or [])
    if len(strings) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop sequences")
    for text in strings:
        if not text or len(text) > MAX_STOP_CHARS:
            raise ValueError(f"each stop sequence must be 1 to {MAX_STOP_CHARS} characters")
    return stop


def _metadata_ok(metadata: dict[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS or len(value) > MAX_METADATA_VALUE_CHARS:
            raise ValueError(f"metadata keys are at most {MAX_METADATA_KEY_CHARS} characters and values at most "
                             f"{MAX_METADATA_VALUE_CHARS}")
    return metadata


Stop = Annotated[str | list[str] | None, AfterValidator(_stop_ok)]
Metadata = Annotated[dict[str, str] | None, AfterValidator(_metadata_ok)]
RequiredMetadata = Annotated[dict[str, str], AfterValidator(_metadata_ok)]
