"""The OpenAPI document, kept true: each route names its request body and its responses here, and a
schemathesis test holds the running service to them (tests/e2e/test_openapi_fuzz.py).

Bodies are parsed by `parse_json_body` (any Content-Type, deep JSON refused), not by FastAPI, so
their schemas are declared through `openapi_extra` and registered as components below."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from pure_model_api.protocol.chat import DocumentedError
from pure_model_api.protocol.openai import OpenAIError

SSE = {"text/event-stream": {"schema": {  # one server-sent event; `data` is JSON (or [DONE] on /v1)
    "type": "object", "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}}}}}
ERROR_STATUSES = {
    400: "bad request: the reason names the field",
    401: "missing or wrong API key (only when --api-key is set)",
    404: "no such conversation, response, item, model or route",
    405: "wrong method",
    408: "the body did not arrive within --body-timeout",
    413: "body over --max-body-bytes",
    431: "request headers over 16 KB",
    503: "loading, busy (Retry-After) or shutting down",
}
GENERATION_STATUSES = {**ERROR_STATUSES, 500: "a fault in generation; nothing was stored"}


def _error_model(openai: bool) -> type[BaseModel]:
    return OpenAIError if openai else DocumentedError


def responses(ok: type[BaseModel] | None, *, openai: bool, stream: bool = False, generation: bool = False,
              ok_content: dict | None = None) -> dict:
    """`responses=` for a route: its 200 (JSON, and SSE where it streams) and its error statuses,
    in the surface's error shape."""
    documented: dict = {}
    if ok is not None:
        documented[200] = {"model": ok, "content": SSE} if stream else {"model": ok}
    elif ok_content is not None:
        documented[200] = {"content": ok_content, "description": "OK"}
    statuses = GENERATION_STATUSES if generation else ERROR_STATUSES
    for status, description in statuses.items():
        documented[status] = {"model": _error_model(openai), "description": description}
    return documented


def body(model: type[BaseModel], *, required: bool = True) -> dict:
    """`openapi_extra=` naming a route's JSON body; `install_openapi` moves its schema into the
    document's components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def install_openapi(app: FastAPI) -> None:
    """Build the document once: the request bodies' schemas (as the routes name them) among its
    components, and no 422s."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                   description=app.description)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for schema in map(_body_schema, app.routes):  # from the routes: get_openapi drops null defaults
                if schema is not None:
                    schema = dict(schema)
                    schemas.update(schema.pop("$defs", {}))
                    schemas[schema["title"]] = schema
            for operation in (op for path in document["paths"].values() for op in path.values()):
                operation["responses"].pop("422", None)  # FastAPI's; bad parameters are a 400 here
                content = operation.get("requestBody", {}).get("content", {}).get("application/json")
                if content:
                    content["schema"] = {"$ref": f"#/components/schemas/{content['schema']['title']}"}
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def _body_schema(route) -> dict | None:
    extra = getattr(route, "openapi_extra", None) or {}
    return extra.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
