"""Typed exceptions. Each knows its HTTP status; one handler in server/ turns them into responses."""

from __future__ import annotations


class ApiError(Exception):
    """An error a client can see. `code` and `param` feed the OpenAI error shape."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param

    headers: dict[str, str] = {}


class BadRequest(ApiError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(BadRequest):
    def __init__(self, message: str):
        super().__init__(message, code="context_length_exceeded", param="messages")


class Unauthorized(ApiError):
    status_code = 401
    error_type = "authentication_error"

    def __init__(self, message: str = "missing or invalid API key"):
        super().__init__(message, code="invalid_api_key")


class NotFound(ApiError):
    status_code = 404
    error_type = "not_found_error"


class ModelNotFound(NotFound):
    def __init__(self, model: str):
        super().__init__(f"model '{model}' is not served here", code="model_not_found", param="model")


class MethodNotAllowed(ApiError):
    status_code = 405
    error_type = "invalid_request_error"


class PayloadTooLarge(ApiError):
    status_code = 413
    error_type = "invalid_request_error"


class RequestTimeout(ApiError):
    status_code = 408
    error_type = "invalid_request_error"


class HeadersTooLarge(ApiError):
    status_code = 431
    error_type = "invalid_request_error"


class ServiceUnavailable(ApiError):
    status_code = 503
    error_type = "server_error"


class StoreUnavailable(ServiceUnavailable):
    """The conversation database cannot be reached: nothing was stored, the client may retry."""

    def __init__(self, message: str = "the conversation database is unavailable, retry later"):
        super().__init__(message, code="store_unavailable")
        self.headers = {"Retry-After": "2"}


class ServerBusy(ServiceUnavailable):
    """The waiting queue is full: the client should come back later."""

    def __init__(self, message: str = "server is busy, retry later", retry_after_s: int = 1):
        super().__init__(message, code="server_busy")
        self.headers = {"Retry-After": str(retry_after_s)}


class ModelLoading(ServiceUnavailable):
    def __init__(self, message: str = "the model is still loading, retry shortly"):
        super().__init__(message, code="model_loading")
        self.headers = {"Retry-After": "5"}


class ShuttingDown(ServiceUnavailable):
    def __init__(self):
        super().__init__("the server is shutting down", code="shutting_down")


class EngineFailed(ServiceUnavailable):
    """The engine's inference thread stopped on a fault: nothing more can be served until a restart."""

    def __init__(self, failure: str):
        super().__init__(f"the inference engine has stopped ({failure}); the server needs a restart",
                         code="engine_failed")


class ModelLoadError(Exception):
    """The model cannot be loaded (bad id, no network, missing file, unavailable device)."""


class GenerationCancelled(Exception):
    """The request was cancelled (client gone or server stopping) before it completed."""
