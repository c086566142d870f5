"""Webhook deliveries: not a job kind but a task of every kind's terminal transition, on its own queue."""

from __future__ import annotations

from pydantic import Field

from workers.contracts.base import Message, Payload, Queues, task_id

DELIVER_TASK = "animegan.deliver_webhook"
QUEUE = Queues.webhooks
TASK_MODULE = "workers.tasks.webhooks"


class WebhookPayload(Payload):
    event: str = Field(min_length=1, max_length=64)  # what happened, e.g. the terminal status "succeeded"


def webhook_message(job_id: str, event: str, countdown: float | None = None) -> Message:
    payload = WebhookPayload(job_id=job_id, event=event)
    return Message(DELIVER_TASK, payload, task_id(job_id, f"webhook-{event}"), countdown)
