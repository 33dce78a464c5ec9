"""Request and response schemas, one module per API surface. Requests own their conversion to
engine parameters."""
