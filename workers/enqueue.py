"""Sending and revoking tasks by name: the messages each kind's contract builds go out through the process's
Celery app, so the API never imports workers.tasks or torch. Routing to a queue comes from the app's
task_routes (celery_app.py, from the registry of kinds), the same table the workers use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery

from workers.celery_app import get_app
from workers.contracts.base import Message

logger = logging.getLogger(__name__)


def send(messages: Message | Iterable[Message], app: Celery | None = None) -> list[str]:
    """Send one message or several, in order; their task ids."""
    app = app or get_app()
    batch = [messages] if isinstance(messages, Message) else list(messages)
    visibility = app.conf.broker_transport_options.get("visibility_timeout", 3600)
    for message in batch:
        if message.countdown is not None and not 0 <= message.countdown < visibility:
            # A delayed message waits unacked inside a worker; past the visibility timeout the broker hands it
            # out again, and again (kombu#337), so a delay must stay well inside that timeout.
            raise ValueError(
                f"countdown {message.countdown} s for {message.task} must be at least 0 and shorter than the "
                f"broker's visibility timeout ({visibility} s); schedule longer waits differently"
            )
    for message in batch:
        app.send_task(
            message.task,
            args=[message.payload.model_dump(mode="json")],
            task_id=message.task_id,
            countdown=message.countdown,
        )
        logger.debug("sent %s %s for job %s", message.task, message.task_id, message.payload.job_id)
    return [message.task_id for message in batch]


def revoke(task_ids: list[str], app: Celery | None = None) -> list[str]:
    """Ask workers to drop not-yet-started tasks (best effort: the cancel flag in the job record is what
    actually stops work; revoked ids live only in worker memory)."""
    (app or get_app()).control.revoke(task_ids)
    return task_ids
