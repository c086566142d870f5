"""Webhook deliveries: not a job kind but a task of every kind's terminal transition, on its own queue."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from workers.contracts.base import Message, Payload, Queues, task_id

DELIVER_TASK = "animegan.deliver_webhook"
QUEUE = Queues.webhooks
TASK_MODULE = "workers.tasks.webhooks"


class WebhookEvent(StrEnum):
    """What a create's `webhook_events_filter` may pick (as Replicate's); without one, only `completed`."""

    start = "start"  # the job started running (job.running)
    progress = "progress"  # progress moved on (job.progress), at most one per PROGRESS_WEBHOOK_SECONDS
    completed = "completed"  # the job ended, in whatever status (job.<status>)


WEBHOOK_EVENTS = list(WebhookEvent)
DEFAULT_WEBHOOK_EVENTS = (WebhookEvent.completed,)
# At most one progress delivery per job in this many seconds (a batch of 10,000 images is not 10,000 POSTs).
PROGRESS_WEBHOOK_SECONDS = 5.0


class WebhookPayload(Payload):
    # What happened: "start", "progress", or the terminal status ("succeeded", ...: the completed event).
    event: str = Field(min_length=1, max_length=64)
    seq: int = 0  # the number of a progress delivery (each gets its own webhook-id)


def event_category(event: str) -> WebhookEvent:
    """The filter entry an event falls under: start, progress, or completed (any terminal status)."""
    if event in (WebhookEvent.start, WebhookEvent.progress):
        return WebhookEvent(event)
    return WebhookEvent.completed


def wants(filter_events: tuple[str, ...], event: str) -> bool:
    """Whether a job whose create picked `filter_events` (empty: the default) gets `event` delivered."""
    return event_category(event).value in (filter_events or tuple(e.value for e in DEFAULT_WEBHOOK_EVENTS))


def webhook_message(job_id: str, event: str, countdown: float | None = None, seq: int = 0) -> Message:
    payload = WebhookPayload(job_id=job_id, event=event, seq=seq)
    name = f"webhook-{event}" if not seq else f"webhook-{event}-{seq}"
    return Message(DELIVER_TASK, payload, task_id(job_id, name), countdown)
