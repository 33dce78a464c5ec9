"""Pure Model API Service: one chat model over HTTP, conversations kept on the server."""

__version__ = "0.1.0"
