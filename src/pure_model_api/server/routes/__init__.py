"""Routes, one module per API surface. Each is thin: parse, delegate to the service, shape."""
