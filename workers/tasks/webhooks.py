"""The webhook delivery task: POST a terminal job's public view to its webhook_url, retried with backoff."""

from __future__ import annotations

import logging

from celery import Task

from workers.celery_app import app
from workers.contracts.webhooks import DELIVER_TASK, WebhookEvent, WebhookPayload, event_category, wants
from workers.json_types import JSONObject
from workers.settings import WorkerSettings
from workers.tasks.runtime import RETRY_BASE_SECONDS, context

logger = logging.getLogger(__name__)


@app.task(name=DELIVER_TASK, bind=True)
def deliver_webhook(self: Task, payload: JSONObject) -> None:
    from workers.jobs.webhooks import (
        WebhookError,
        WebhookTransientError,
        backoff_seconds,
        build_message,
        deliver,
        public_view,
    )

    p = WebhookPayload.model_validate(payload)
    ctx = context()
    record = ctx.jobs.get(p.job_id)
    if record is None or not record.webhook_url:
        logger.info("job %s: no record or no webhook_url; nothing to deliver", p.job_id)
        return
    if not wants(record.webhook_events, p.event):
        logger.info("job %s: its webhook_events_filter leaves out %s", p.job_id, p.event)
        return
    # The body is the job as it is now (a start delivery that waited behind a busy worker may show it ended).
    completed = event_category(p.event) == WebhookEvent.completed
    settings: WorkerSettings = ctx.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    message = build_message(public_view(record), str(record.status) if completed else p.event, p.seq)
    try:
        deliver(
            record.webhook_url,
            message,
            secret,
            settings.allow_private_webhooks,
            settings.webhook_timeout_seconds,
        )
    except WebhookError as exc:
        logger.warning("job %s: webhook not delivered: %s", p.job_id, exc)
    except WebhookTransientError as exc:
        tries = self.request.retries + 1
        if tries >= settings.webhook_max_attempts:
            logger.error("job %s: webhook given up after %d tries: %s", p.job_id, tries, exc)
            return
        delay = backoff_seconds(self.request.retries, base_seconds=RETRY_BASE_SECONDS)
        logger.info("job %s: webhook try %d failed (%s); next in %.0f s", p.job_id, tries, exc, delay)
        raise self.retry(exc=exc, countdown=delay, max_retries=settings.webhook_max_attempts - 1) from exc
