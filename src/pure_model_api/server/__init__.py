"""The HTTP layer: app factory, routes per surface, SSE, auth, metrics. Imports no torch."""
