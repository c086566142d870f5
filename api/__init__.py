"""The HTTP API: a thin FastAPI app that validates requests, records jobs and enqueues them by name."""
