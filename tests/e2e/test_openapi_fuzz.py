"""Schemathesis against the service's own /openapi.json: a few hundred generated requests over every
route, valid and not, against a real server process. No 5xx, and every answer matches what the
document says: its status, its content type and its schema. So the document is kept true."""

import json

import httpx
import pytest
import schemathesis
from helpers import ServerProcess
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from pure_model_api.config import Settings
from pure_model_api.server.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory, tiny_models):
    """The tiny model, so that a generated max_tokens of thousands is quick; the API is the same.
    Bodies up to 32 MiB: a generated list past its maxItems (2049 messages) can run to megabytes, and
    must reach the validator (a 400) rather than the body limit (a 413)."""
    db = tmp_path_factory.mktemp("fuzz") / "c.sqlite3"
    with ServerProcess("--model", str(tiny_models["llama"]), "--max-queue", "64", "--max-body-bytes", str(32 << 20),
                       db=db) as server:
        yield server


def served_schema():
    """The document the server serves (it needs no model to build), read at collection time; the
    test checks that the running server serves the same one."""
    return create_app(Settings(model="demo")).openapi()


schema = schemathesis.openapi.from_dict(served_schema())


def test_the_server_serves_this_document(fuzzed_server):
    assert httpx.get(fuzzed_server.url + "/openapi.json").json() == json.loads(json.dumps(served_schema()))


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_route_keeps_its_documented_contract(case, fuzzed_server):
    case.call_and_validate(base_url=fuzzed_server.url, checks=CHECKS, timeout=120)
