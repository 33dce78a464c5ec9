from pure_model_api.errors import BadRequest, ContextLengthExceeded, ServerBusy, Unauthorized
from pure_model_api.server.errors import describe_validation_errors, error_body


def test_documented_surface_gets_a_plain_error_string():
    assert error_body("/chat", BadRequest("message is required")) == {"error": "message is required"}


def test_openai_surface_gets_openai_error_objects():
    body = error_body("/v1/chat/completions", ContextLengthExceeded("too long"))
    assert body == {"error": {"message": "too long", "type": "invalid_request_error",
                              "param": "messages", "code": "context_length_exceeded"}}


def test_statuses():
    assert BadRequest("x").status_code == 400
    assert Unauthorized().status_code == 401
    busy = ServerBusy()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert busy.message == "server is busy, retry later"


def test_validation_errors_read_as_one_sentence():
    errors = [{"type": "missing", "loc": ("body", "message"), "msg": "Field required"},
              {"type": "int_type", "loc": ("body", "max_tokens"), "msg": "Input should be a valid integer"}]
    assert describe_validation_errors(errors) == "message: Field required; max_tokens: Input should be a valid integer"
    assert describe_validation_errors([{"type": "json_invalid", "loc": ("body", 0), "msg": "x"}]) == \
        "the request body is not valid JSON"
