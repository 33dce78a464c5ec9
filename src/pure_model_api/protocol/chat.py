"""The documented API: POST /chat, POST /reset, GET /status, GET /health."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pure_model_api.engine.params import SamplingParams
from pure_model_api.protocol.limits import Seed, Stop

SESSION_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
DEFAULT_SESSION = "default"


class ChatRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    message: str = Field(min_length=1)
    max_tokens: int = Field(512, ge=1, le=1_000_000)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    session_id: str = Field(DEFAULT_SESSION, pattern=SESSION_ID_PATTERN)
    stream: bool = False
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, le=1_000_000)
    repetition_penalty: float = Field(1.0, ge=0.01, le=10.0)
    seed: Seed | None = None
    stop: Stop = None
    ignore_eos: bool = False

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be empty")
        return value

    @field_validator("temperature", "top_p", "repetition_penalty")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def to_sampling_params(self) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            repetition_penalty=self.repetition_penalty, seed=self.seed, stop=stop, ignore_eos=self.ignore_eos)


class ResetRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    session_id: str = Field(DEFAULT_SESSION, pattern=SESSION_ID_PATTERN)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose KV cache the engine reused


class ChatResponse(BaseModel):
    message: str
    response: str
    status: Literal["success"] = "success"
    session_id: str
    finish_reason: str
    usage: Usage


# ---- documented shapes of the other answers (the OpenAPI document; tests hold the service to them) ----
class DocumentedError(BaseModel):
    error: str


class ResetResponse(BaseModel):
    status: Literal["success"]
    message: str
    session_id: str
    rounds_removed: int


class HealthResponse(BaseModel):
    status: Literal["healthy", "loading", "failed"]
    error: str | None = None


class StoreStatus(BaseModel):
    kind: Literal["sqlite", "postgresql"]
    operations: int
    errors: int
    mean_latency_ms: float


class MemoryEstimate(BaseModel):
    needed: int  # bytes the model was estimated to need before loading (weights and KV cache)
    available: int  # bytes of `where` available then
    where: str  # "host memory" or "GPU memory"
    detail: str


class StatusResponse(BaseModel):
    model_config = ConfigDict(extra="allow")  # the engine adds what it knows (dtype, kv cache, ...)

    model_name: str
    device: str
    engine: str
    memory_allocated: int | float
    memory_estimate: MemoryEstimate | None = None  # set once loaded, where the need could be estimated
    conversation_length: int
    session_id: str
    ready: bool
    uptime_s: float
    sessions: int
    requests_served: int
    max_history_rounds: int
    store: StoreStatus


class SessionSummary(BaseModel):
    session_id: str
    created_at: float
    last_used_at: float
    messages: int
    title: str  # the first words of its first message; "" while it has none


class SessionsPage(BaseModel):
    sessions: list[SessionSummary]
    has_more: bool


class SessionMessage(BaseModel):
    id: str
    role: str  # also "function_call" (content: its arguments) and "function_call_output" (content: the result)
    content: str
    created_at: float
    name: str | None = None  # a function call's function
    call_id: str | None = None  # a function call's, or the call a result answers


class SessionDetail(BaseModel):
    session_id: str
    created_at: float
    last_used_at: float
    messages: list[SessionMessage]


class SessionDeleted(BaseModel):
    status: Literal["success"]
    session_id: str
    deleted: bool
