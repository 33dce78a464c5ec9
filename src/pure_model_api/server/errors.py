"""One place that turns errors into responses, in the shape of the surface that was called:
`{"error": "..."}` on the documented API, OpenAI's `{"error": {message, type, param, code}}` on /v1."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from pure_model_api.errors import ApiError, BadRequest, MethodNotAllowed, NotFound
from pure_model_api.protocol.limits import check_json_text
from pure_model_api.server.streaming import ClientDisconnected

log = logging.getLogger(__name__)


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_body(path: str, error: ApiError) -> dict:
    if is_openai_path(path):
        return {"error": {"message": error.message, "type": error.error_type,
                          "param": error.param, "code": error.code}}
    return {"error": error.message}


def error_response(path: str, error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(path, error), status_code=error.status_code, headers=error.headers or None)


def describe_validation_errors(errors) -> str:
    """Pydantic's error list as one sentence a person can act on."""
    parts = []
    for error in errors:
        location = [str(p) for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if error.get("type") == "missing" and not location:
            return "the request needs a JSON body"
        message = error.get("msg", "is invalid").removeprefix("Value error, ")
        parts.append(f"{'.'.join(location)}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


def bad_request_from(errors) -> BadRequest:
    """Pydantic's errors as one 400, its `param` the first field at fault."""
    location = [str(p) for p in (errors[0].get("loc", ()) if errors else ()) if p != "body"]
    return BadRequest(describe_validation_errors(errors), param=location[0] if location else None)


async def parse_json_body(request: Request, model: type[BaseModel], *, body_optional: bool = False,
                          defaults: dict | None = None) -> BaseModel:
    """The body as `model`, whatever Content-Type the client sent, over `defaults` (e.g. the query
    string); every fault is a 400."""
    raw = await request.body()
    data = dict(defaults or {})
    if raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError as error:
            raise BadRequest("the request body is not valid JSON") from error
        except RecursionError as error:  # e.g. 100,000 nested lists
            raise BadRequest("the request body is nested too deeply") from error
        if not isinstance(parsed, dict):
            raise BadRequest("the request body must be a JSON object")
        check_json_text(parsed)
        data.update(parsed)
    elif not body_optional:
        raise BadRequest("the request needs a JSON body")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise bad_request_from(error.errors()) from error


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error_response(request.url.path, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return error_response(request.url.path, bad_request_from(error.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if error.status_code == 404:
            mapped: ApiError = NotFound(f"no such endpoint: {request.url.path}")
        elif error.status_code == 405:
            mapped = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        else:
            mapped = ApiError(str(error.detail))
            mapped.status_code = error.status_code
        return error_response(request.url.path, mapped)

    @app.exception_handler(ClientDisconnected)
    async def client_gone(request: Request, error: ClientDisconnected):
        return Response(status_code=499)  # nobody reads it; the access log and metrics do

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, ApiError("internal server error; see the server log"))
