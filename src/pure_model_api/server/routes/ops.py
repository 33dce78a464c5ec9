"""What operators and load balancers ask: /health, /status, /metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from pure_model_api.protocol.chat import DEFAULT_SESSION, SESSION_ID_PATTERN, HealthResponse, StatusResponse
from pure_model_api.server.openapi import responses

router = APIRouter()


@router.get("/health", responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse,
            "description": "loading, or the model failed to load"}})
async def health(request: Request):
    state = request.app.state
    engine = state.service.engine
    if engine is not None:
        failure = engine.health()
        if failure is not None:
            return JSONResponse({"status": "failed", "error": failure}, status_code=503)
        return {"status": "healthy"}
    if getattr(state, "load_error", None):
        return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
    return JSONResponse({"status": "loading"}, status_code=503)


@router.get("/status", responses=responses(StatusResponse, openai=False))
async def status(request: Request, session_id: str = Query(DEFAULT_SESSION, pattern=SESSION_ID_PATTERN)):
    state = request.app.state
    service = state.service
    settings = state.settings
    engine = service.engine
    described = engine.stats().as_dict() if engine is not None else {
        "model_name": settings.model, "device": settings.device, "memory_allocated": 0, "engine": settings.engine}
    estimate = getattr(engine, "memory_estimate", None)
    return {
        **described,
        "memory_estimate": estimate.as_dict() if estimate is not None else None,
        "conversation_length": await service.conversation_length(request.state.owner, session_id),
        "session_id": session_id,
        "ready": engine is not None,
        "uptime_s": round(time.time() - service.started_at, 1),
        "sessions": await service.count_conversations(request.state.owner),
        "requests_served": service.requests_served,
        "max_history_rounds": settings.max_history_rounds,
        "store": service.store_status(),
    }


@router.get("/metrics", responses=responses(None, openai=False, ok_content={
            CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}))
async def metrics(request: Request):
    state = request.app.state
    state.metrics.stored_conversations.set(await state.service.count_conversations(None))
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

