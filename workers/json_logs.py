"""JSON log lines (one object a line) carrying the job id of the task that logged them, for log pipelines."""

from __future__ import annotations

import contextvars
import json
import logging
import time

from workers.json_types import JSONObject

# The job of the task running in this process (set around each task), or None.
current_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("animegan_job_id", default=None)


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, job_id (when a task runs), and the exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: JSONObject = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None) or current_job_id.get()
        if job_id:
            line["job_id"] = job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def use_json(logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (default: the root logger) the JSON formatter."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())


def install_celery_hooks() -> None:
    """Worker side: JSON on Celery's own handlers, and the job id of each task in its log lines."""
    from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

    @after_setup_logger.connect(weak=False)
    @after_setup_task_logger.connect(weak=False)
    def _format(logger: logging.Logger, **_: object) -> None:
        use_json(logger)

    @task_prerun.connect(weak=False)
    def _enter(args: tuple[object, ...] | None = None, **_: object) -> None:
        payload = args[0] if args else None
        current_job_id.set(payload.get("job_id") if isinstance(payload, dict) else None)

    @task_postrun.connect(weak=False)
    def _leave(**_: object) -> None:
        current_job_id.set(None)
