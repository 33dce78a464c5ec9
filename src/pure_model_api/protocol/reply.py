"""The base of every reply shape: the model a route builds its answer from is the schema the
OpenAPI document shows, and a reply carries every field, defaults included (null where empty)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


def _every_field_required(schema: dict) -> None:
    schema["required"] = list(schema.get("properties", {}))


class Reply(BaseModel):
    model_config = ConfigDict(json_schema_extra=_every_field_required)
