"""What a load balancer needs to send each conversation to the replica that holds its KV cache: the
conversation's id in a header (`X-Conversation-ID`), where a balancer can hash on it without
reading the body. A client may send the id there instead of (or as well as) in the body; the
answer carries it back."""

from __future__ import annotations

from fastapi import Request

from pure_model_api.errors import BadRequest

HEADER = "X-Conversation-ID"


def from_header(request: Request) -> str | None:
    """The conversation the header names, if any."""
    return request.headers.get(HEADER)


def check_agrees(request: Request, from_body: str | None, param: str) -> None:
    """A header and a body that name different conversations are a 400."""
    named = from_header(request)
    if named is not None and from_body is not None and named != from_body:
        raise BadRequest(f"the {HEADER} header ('{named}') and {param} ('{from_body}') name different "
                         f"conversations", param=param)
