"""`pure-model-api` / `python pure_model_api.py`: parse settings, serve until SIGTERM or Ctrl-C."""

from __future__ import annotations

import ipaddress
import logging
import sys

import uvicorn

from pure_model_api.config import load_settings
from pure_model_api.conversations import open_store
from pure_model_api.engine.lifeline import watch_parent
from pure_model_api.errors import StoreUnavailable
from pure_model_api.server.app import create_app

watch_parent()  # in vLLM's spawned engine core, which imports this module: end with the service


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class DrainingServer(uvicorn.Server):
    """On SIGTERM/Ctrl-C, answer new requests with 503 while in-flight ones finish
    (uvicorn waits up to --shutdown-timeout for them), then exit 0: a clean shutdown is
    not a failure, so the signal is not re-raised after it as uvicorn would."""

    def __init__(self, config: uvicorn.Config, app):
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig, frame) -> None:
        self.app.state.draining = True
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def hub_command(argv: list[str]) -> int:
    """`pull MODEL`: download only (for images and offline machines); `models`: what the cache holds."""
    from pure_model_api.engine import hub
    from pure_model_api.errors import ModelLoadError

    logging.basicConfig(level="INFO", format="%(message)s")
    if argv[0] == "models":
        for row in hub.cached_models():
            quants = f"  GGUF: {', '.join(row['gguf'])}" if row["gguf"] else ""
            print(f"{row['model']}  {row['bytes'] / 1e9:.2f} GB{quants}")
        return 0
    if len(argv) != 2:
        print("usage: pure-model-api pull MODEL (org/repo, org/repo:QUANT, qwen, qwen:1.5b or llama)", file=sys.stderr)
        return 2
    try:
        for path in hub.pull(argv[1]):
            print(path)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("pull", "models"):
        return hub_command(argv)
    settings = load_settings(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.api_key and not is_loopback(settings.host):
        logging.getLogger("pure_model_api").warning(
            "serving on %s without API keys: anyone who can reach this address can use the model and read every "
            "conversation; set --api-key (or PURE_API_API_KEY), or bind to 127.0.0.1", settings.host)
    try:  # the database first: a service that cannot keep conversations does not start
        store = open_store(settings.db, settings.max_history_rounds)
    except StoreUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    app = create_app(settings, store=store)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, timeout_graceful_shutdown=settings.shutdown_timeout)
    server = DrainingServer(config, app)
    app.state.on_load_failure = lambda: setattr(server, "should_exit", True)
    server.run()
    if app.state.load_error:
        print(f"error: {app.state.load_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
