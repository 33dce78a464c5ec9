"""Prometheus metrics, on a registry of the app's own (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pure_model_api.engine.params import Finished

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, engine_stats):
        """`engine_stats()` returns the engine's EngineStats, or None while loading."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pure_api_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.prompt_tokens = Counter("pure_api_prompt_tokens", "prompt tokens processed", registry=r)
        self.cached_prompt_tokens = Counter("pure_api_cached_prompt_tokens",
                                            "prompt tokens whose KV cache the engine reused (prefix cache hits)",
                                            registry=r)
        self.completion_tokens = Counter("pure_api_completion_tokens", "completion tokens generated", registry=r)
        self.time_to_first_token = Histogram("pure_api_time_to_first_token_seconds", "submission to first token",
                                             buckets=LATENCY_BUCKETS, registry=r)
        self.time_per_output_token = Histogram("pure_api_time_per_output_token_seconds",
                                               "decode time per token after the first", buckets=LATENCY_BUCKETS,
                                               registry=r)

        def stat(name: str):
            return lambda: getattr(engine_stats(), name, 0)  # 0 while loading (None has no such field)

        for metric, key, help_text in (
            ("pure_api_running_requests", "running_requests", "requests in the running batch"),
            ("pure_api_queued_requests", "queued_requests", "requests waiting for a batch slot"),
            ("pure_api_batch_size", "running_requests", "rows in the current decode batch"),
            ("pure_api_kv_cache_bytes", "kv_cache_bytes", "KV cache memory in use"),
            ("pure_api_memory_allocated_bytes", "memory_allocated", "weights and cache memory"),
        ):
            Gauge(metric, help_text, registry=r).set_function(stat(key))
        r.register(KvTierCollector(engine_stats))
        self.engine_info = Gauge("pure_api_engine_info", "the engine serving the model (1 once loaded)",
                                 ["engine", "model"], registry=r)
        # set by the /metrics route from a worker thread before each scrape: a store query must not
        # run on the event loop, where it would wait behind a write (SQLite) or a pool (PostgreSQL)
        self.stored_conversations = Gauge("pure_api_stored_conversations", "conversations in the store, all keys",
                                          registry=r)
        self.store_info = Gauge("pure_api_store_info", "the conversation store in use", ["kind"], registry=r)
        self.store_seconds = Histogram("pure_api_store_operation_seconds", "one store operation (a query or a "
                                       "transaction)", buckets=STORE_BUCKETS, registry=r)
        self.store_errors = Counter("pure_api_store_errors", "store operations that failed", registry=r)

    def watch_store(self, store) -> None:
        self.store_info.labels(kind=store.kind).set(1)

        def observe(seconds: float, ok: bool) -> None:
            self.store_seconds.observe(seconds)
            if not ok:
                self.store_errors.inc()

        store.on_operation = observe

    def engine_loaded(self, engine: str, model: str) -> None:
        self.engine_info.labels(engine=engine, model=model).set(1)

    def generation_finished(self, finished: Finished) -> None:
        self.prompt_tokens.inc(finished.prompt_tokens)
        self.cached_prompt_tokens.inc(finished.cached_tokens)
        self.completion_tokens.inc(finished.completion_tokens)
        self.time_to_first_token.observe(finished.time_to_first_token_s)
        if finished.completion_tokens > 1:
            self.time_per_output_token.observe(finished.time_per_output_token_s)

    def count_request(self, route: str, status: int) -> None:
        self.requests.labels(route=route, status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestCounter:
    """ASGI middleware that counts each response by route template and status."""

    def __init__(self, app, metrics_of):
        self.app = app
        self.metrics_of = metrics_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            metrics = self.metrics_of()
            if metrics is not None:
                metrics.count_request(getattr(route, "path", "unmatched"), status["code"])


class KvTierCollector:
    """The llama.cpp engine's saved KV states, per tier (ram, disk), read at each scrape."""

    def __init__(self, engine_stats):
        self.engine_stats = engine_stats

    def describe(self):
        return []  # metrics exist only on an engine with tiers

    def collect(self):
        tiers = getattr(self.engine_stats(), "kv_tiers", None)
        if not tiers:
            return
        families = [
            (GaugeMetricFamily, "pure_api_kv_saved_states", "conversation KV states saved", "states"),
            (GaugeMetricFamily, "pure_api_kv_saved_bytes", "bytes of saved KV states", "bytes"),
            (CounterMetricFamily, "pure_api_kv_hits", "saved states found for a prompt", "hits"),
            (CounterMetricFamily, "pure_api_kv_restores", "saved states restored into the context", "restores"),
            (CounterMetricFamily, "pure_api_kv_restore_seconds", "time spent restoring saved states",
             "restore_seconds"),
            (CounterMetricFamily, "pure_api_kv_evictions", "saved states dropped for room", "evictions"),
        ]
        for kind, name, help_text, key in families:
            family = kind(name, help_text, labels=["tier"])
            for tier in ("ram", "disk"):
                family.add_metric([tier], tiers[tier][key])
            yield family
        yield CounterMetricFamily("pure_api_kv_misses", "prompts for which no saved state held more than the "
                                  "context", value=tiers["misses"])
