"""The Conversations API (/v1/conversations) and, for /chat users, /sessions: two views of the
same stored conversations (a /chat session id is a conversation id)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request

from pure_model_api.errors import NotFound
from pure_model_api.protocol.chat import SESSION_ID_PATTERN, SessionDeleted, SessionDetail, SessionsPage
from pure_model_api.protocol.responses import (
    ConversationCreate,
    ConversationDeleted,
    ConversationObject,
    ConversationUpdate,
    ItemList,
    ItemObject,
    ItemsCreate,
    item_of,
)
from pure_model_api.server.errors import parse_json_body
from pure_model_api.server.openapi import body, responses

router = APIRouter()

PAGE_LIMIT = Query(20, ge=1, le=100)
PAGE_ORDER = Query("desc", pattern="^(asc|desc)$")
SESSION_ID = Path(pattern=SESSION_ID_PATTERN)


def _service(request: Request):
    return request.app.state.service


def _conversation(row: dict) -> dict:
    return ConversationObject.of(row).model_dump()


@router.post("/v1/conversations", openapi_extra=body(ConversationCreate, required=False),
             responses=responses(ConversationObject, openai=True))
async def create_conversation(request: Request):
    body = await parse_json_body(request, ConversationCreate, body_optional=True)
    items = [item.as_message() for item in body.items]
    return _conversation(await _service(request).create_conversation(request.state.owner, body.metadata or {},
                                                                            items))


@router.get("/v1/conversations/{conversation_id}", responses=responses(ConversationObject, openai=True))
async def get_conversation(conversation_id: str, request: Request):
    return _conversation(await _service(request).conversation(request.state.owner, conversation_id))


@router.post("/v1/conversations/{conversation_id}", openapi_extra=body(ConversationUpdate),
             responses=responses(ConversationObject, openai=True))
async def update_conversation(conversation_id: str, request: Request):
    body = await parse_json_body(request, ConversationUpdate)
    row = await _service(request).update_conversation(request.state.owner, conversation_id, body.metadata)
    return _conversation(row)


@router.delete("/v1/conversations/{conversation_id}", responses=responses(ConversationDeleted, openai=True))
async def delete_conversation(conversation_id: str, request: Request):
    await _service(request).delete_conversation(request.state.owner, conversation_id)
    return ConversationDeleted(id=conversation_id).model_dump()


@router.get("/v1/conversations/{conversation_id}/items", responses=responses(ItemList, openai=True))
async def list_items(conversation_id: str, request: Request, after: str | None = None, limit: int = PAGE_LIMIT,
                     order: str = PAGE_ORDER):
    page, has_more = await _service(request).list_items(request.state.owner, conversation_id, after, limit, order)
    return ItemList.of(page, has_more).model_dump()


@router.post("/v1/conversations/{conversation_id}/items", openapi_extra=body(ItemsCreate),
             responses=responses(ItemList, openai=True))
async def add_items(conversation_id: str, request: Request):
    body = await parse_json_body(request, ItemsCreate)
    added = await _service(request).add_items(request.state.owner, conversation_id,
                                                      [item.as_message() for item in body.items])
    return ItemList.of(added, False).model_dump()


@router.get("/v1/conversations/{conversation_id}/items/{item_id}", responses=responses(ItemObject, openai=True))
async def get_item(conversation_id: str, item_id: str, request: Request):
    return item_of(await _service(request).item(request.state.owner, conversation_id, item_id)).model_dump()


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}",
               responses=responses(ConversationObject, openai=True))
async def delete_item(conversation_id: str, item_id: str, request: Request):
    found = await _service(request).delete_item(request.state.owner, conversation_id, item_id)
    if not found:
        raise NotFound(f"item '{item_id}' not found in conversation '{conversation_id}'", param="item_id")
    return _conversation(await _service(request).conversation(request.state.owner, conversation_id))


# ---- /sessions: the same conversations for /chat users, in the documented API's shapes ----
@router.get("/sessions", responses=responses(SessionsPage, openai=False))
async def list_sessions(request: Request, after: str | None = None, limit: int = PAGE_LIMIT):
    page, has_more = await _service(request).list_conversations(request.state.owner, after, limit)
    return {"sessions": [{"session_id": row["id"], **{k: v for k, v in row.items() if k != "id"}} for row in page],
            "has_more": has_more}


@router.get("/sessions/{session_id}", responses=responses(SessionDetail, openai=False))
async def get_session(request: Request, session_id: str = SESSION_ID):
    row = await _service(request).conversation(request.state.owner, session_id, param="session_id")
    messages = await _service(request).messages(request.state.owner, session_id)
    return {"session_id": session_id, "created_at": row["created_at"], "last_used_at": row["updated_at"],
            "messages": [{"id": m.id, "role": m.role, "content": m.text, "created_at": m.created_at,
                          "name": m.extra.get("name"), "call_id": m.extra.get("call_id")} for m in messages]}


@router.delete("/sessions/{session_id}", responses=responses(SessionDeleted, openai=False))
async def delete_session(request: Request, session_id: str = SESSION_ID):
    await _service(request).delete_conversation(request.state.owner, session_id, param="session_id")
    return {"status": "success", "session_id": session_id, "deleted": True}
