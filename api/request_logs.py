"""JSON logs of the API (ANIMEGAN_LOG_FORMAT=json): uvicorn's access and error lines and the app's own in the
workers' format (workers.json_logs), each carrying the job id of the request it was logged for, if any.
"""

from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.json_logs import JsonFormatter, current_job_id, use_json
from workers.json_types import JSONObject

# A request about one job: /v1/jobs/{job_id} and everything under it.
_JOB_PATH = re.compile(r"^/v1/jobs/([^/]+)")
# The Location of a job a create answered with (the id is unknown until the route has made it).
_JOB_LOCATION = re.compile(r"/v1/jobs/([^/?#]+)")


class JobLogContextMiddleware:
    """Sets workers.json_logs.current_job_id for the lines logged while a request about a job is handled: from
    the path, or for a create from the Location of its answer (so uvicorn's access line carries it too)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = _JOB_PATH.match(scope["path"])
        token = current_job_id.set(match.group(1) if match else None)

        async def send_with_job(message: Message) -> None:
            # uvicorn logs the access line while sending the response start, in this context.
            if message["type"] == "http.response.start" and current_job_id.get() is None:
                location = dict(message.get("headers", [])).get(b"location", b"").decode("latin-1")
                created = _JOB_LOCATION.search(location)
                if created:
                    current_job_id.set(created.group(1))
            await send(message)

        try:
            await self.app(scope, receive, send_with_job)
        finally:
            current_job_id.reset(token)


def uvicorn_json_config(level: str = "INFO") -> JSONObject:
    """uvicorn's log_config for `animegan serve`: every line JSON from the first one, the app's own included."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
    }


def use_json_logs() -> None:
    """JSON on the handlers uvicorn set up itself (`uvicorn api.main:app` without animegan serve's config)."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        use_json(logging.getLogger(name))
