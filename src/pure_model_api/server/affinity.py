"""What a load balancer needs to send each conversation to the replica that holds its KV cache: the
conversation's id in a header (`X-Conversation-ID`), where a balancer can hash on it without
reading the body. A client may send the id there instead of (or as well as) in the body; the
answer carries it back."""

from __future__ import annotations

from fastapi import Request

from pure_model_api.errors import BadRequest

HEADER = "X-Conversation-ID"


def conversation_id(request: Request, from_body: str | None, param: str) -> str | None:
    """The conversation a request names: the body's, or else the header's; both must agree."""
    from_header = request.headers.get(HEADER)
    if from_header is not None and from_body is not None and from_header != from_body:
        raise BadRequest(f"the {HEADER} header ('{from_header}') and {param} ('{from_body}') name different "
                         f"conversations", param=param)
    return from_body if from_body is not None else from_header
