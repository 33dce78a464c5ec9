"""The app factory. All state hangs off `app.state`: settings, store, service, metrics.

The HTTP server answers at once; the model loads on a worker thread in the background, and
/health says "loading" (503) until it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from pure_model_api.config import Settings
from pure_model_api.conversations import ConversationStore, open_store
from pure_model_api.errors import ModelLoadError
from pure_model_api.server.errors import install_error_handlers
from pure_model_api.server.gate import RequestChecks, legacy_owner_of, owner_of
from pure_model_api.server.metrics import Metrics, RequestCounter
from pure_model_api.server.openapi import install_openapi
from pure_model_api.server.routes import chat, conversations, openai, ops, responses
from pure_model_api.server.routes.ui import install_ui
from pure_model_api.service import ChatService

log = logging.getLogger(__name__)


def load_engine(settings: Settings):
    """The default engine loader; imported lazily so that the HTTP layer never imports torch."""
    from pure_model_api.engine.base import EngineOptions
    from pure_model_api.engine.select import load_engine as start_engine

    return start_engine(EngineOptions.from_settings(settings))


def create_app(settings: Settings, engine_loader: Callable[[Settings], object] = load_engine,
               store: ConversationStore | None = None) -> FastAPI:
    """`store`: one the caller opened (the CLI opens it first, to fail fast); else opened here."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.store = store or open_store(settings.db, settings.max_history_rounds)
        state.owner_secret = await asyncio.to_thread(state.store.owner_secret)
        await asyncio.to_thread(state.store.adopt_owners, {
            legacy_owner_of(key): owner_of(key, state.owner_secret) for key in settings.api_key})
        state.metrics = Metrics(lambda: state.service.engine.stats() if state.service.engine else None)
        state.metrics.watch_store(state.store)
        state.service = ChatService(state.store, settings.system_prompt, observer=state.metrics,
                                    max_waiting=settings.max_queue)
        loading = asyncio.create_task(_load_in_background(app, engine_loader))
        try:
            yield
        finally:
            state.draining = True
            loading.cancel()
            if state.service.engine is not None:
                await asyncio.to_thread(state.service.engine.close)
            state.store.close()

    app = FastAPI(title="Pure Model API", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.draining = False
    app.state.load_error = None
    app.state.service = None
    app.state.metrics = None
    install_error_handlers(app)
    for router in (chat.router, openai.router, responses.router, conversations.router, ops.router):
        app.include_router(router)
    if not settings.no_ui:
        install_ui(app)
    install_openapi(app)
    # The last added runs first: CORS answers preflights before anything asks for a key, and the
    # counter sees the gate's refusals (401, 413, 503) too.
    app.add_middleware(RequestChecks, state=app.state, api_keys=settings.api_key,
                       max_body_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout)
    app.add_middleware(RequestCounter, metrics_of=lambda: app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Request-ID"])
    return app


async def _load_in_background(app: FastAPI, engine_loader) -> None:
    settings = app.state.settings
    try:
        engine = await asyncio.to_thread(engine_loader, settings)
    except ModelLoadError as error:
        _load_failed(app, str(error))
        return
    except Exception as error:  # noqa: BLE001 - any loader fault is reported the same way
        log.exception("loading %s failed", settings.model)
        _load_failed(app, f"cannot load model '{settings.model}': {error}")
        return
    app.state.service.engine = engine
    app.state.metrics.engine_loaded(engine.name, settings.model)
    log.info("model %s ready: %s", settings.model, engine.stats())


def _load_failed(app: FastAPI, message: str) -> None:
    log.error("%s", message)
    app.state.load_error = message
    on_failure = getattr(app.state, "on_load_failure", None)
    if on_failure is not None:
        on_failure()
