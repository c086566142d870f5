"""Ends the wait of jobs whose task a Redis failover lost: no task of theirs anywhere in the broker.

That is what a failover leaves behind when the replica had not received a message, or its unacked copy, before
the primary went: nothing would ever run the job again, and it holds a slot of its tenant. Training jobs (no
live lease either) get their next segment re-enqueued: safe, since a segment that finds the lease held retries
later and one that already ran (segments_done) drops itself. Stylize and video jobs have no record of their
inputs' keys to re-send, so they fail with `task_lost` (submit again); a batch keeps its finished images: the
unfinished ones fail `task_lost` and the finalizer builds results.zip from the rest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers import enqueue, redis_keys
from workers.contracts.base import Queues
from workers.contracts.batch import BATCH, finalize_message
from workers.contracts.images import STYLIZE
from workers.contracts.training import TRAIN, segment_message
from workers.contracts.video import VIDEO
from workers.contracts.webhooks import webhook_message
from workers.jobstore import JobRecord, JobStatus, JobStore

if TYPE_CHECKING:
    import redis
    from celery import Celery

logger = logging.getLogger(__name__)

# A job touched more recently than this may be between segments (lease released, next segment not yet
# sent); more than the longest lease (workers.jobs.train.lease_ttl, at most 120 s) plus a renewal.
DEFAULT_GRACE_SECONDS = 180.0


@dataclass(frozen=True)
class Requeued:
    job_id: str
    segment: int


IMAGE_KINDS = (STYLIZE.name, BATCH.name, VIDEO.name)


def broker_mentions(client: redis.Redis, job_ids: set[str], queue: str = Queues.train.value) -> set[str]:
    """The ids among `job_ids` that some message in `queue` or the unacked hash names (task ids and argsrepr
    carry the job id in clear text); one LRANGE and one HVALS, run once per reconcile pass and queue."""
    if not job_ids:
        return set()
    messages = [
        *client.lrange(redis_keys.broker_queue(queue), 0, -1),
        *client.hvals(redis_keys.KOMBU_UNACKED),
    ]
    text = [m.decode(errors="replace") if isinstance(m, bytes) else str(m) for m in messages]
    return {job_id for job_id in job_ids if any(job_id in message for message in text)}


def stuck_training_jobs(
    jobs: JobStore, client: redis.Redis, grace_seconds: float, now: float
) -> list[JobRecord]:
    """Running training jobs, quiet for grace_seconds, whose lease is gone and that no message names."""
    candidates = {
        record.id: record
        for record in jobs.iter_records()
        if record.kind == TRAIN.name
        and record.status == JobStatus.RUNNING
        and now - record.updated_at >= grace_seconds
        and not client.exists(redis_keys.lease(record.id))
    }
    named = broker_mentions(client, set(candidates))
    return [record for job_id, record in candidates.items() if job_id not in named]


def stuck_image_jobs(
    jobs: JobStore, client: redis.Redis, grace_seconds: float, now: float
) -> list[JobRecord]:
    """Queued or running stylize, batch and video jobs, quiet for grace_seconds, that no message names (a running
    chunk or segment updates its job's progress every image or few seconds, and a retry waiting out its
    countdown sits in the unacked hash)."""
    candidates = {
        record.id: record
        for record in jobs.iter_records()
        if record.kind in IMAGE_KINDS
        and record.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        and now - record.updated_at >= grace_seconds
    }
    named = broker_mentions(client, set(candidates), Queues.stylize.value)
    return [record for job_id, record in candidates.items() if job_id not in named]


def _end_lost_image_job(jobs: JobStore, record: JobRecord, app: Celery | None) -> None:
    message = "its task was lost from the broker (a Redis failover?); submit the job again"
    if record.kind == BATCH.name:
        total = int(record.progress.get("total", 0))
        for index in range(total):
            jobs.mark_item_failed(record.id, index, "task_lost", message)  # a no-op for finished images
        jobs.start(record.id)  # the finalizer ends running batches only
        enqueue.send(finalize_message(record.id), app=app)
    elif jobs.fail(record.id, "task_lost", message) and record.webhook_url:
        enqueue.send(webhook_message(record.id, JobStatus.FAILED.value), app=app)
    logger.warning(
        "reconciler: %s job %s had no task in the broker; ended (%s)", record.kind, record.id, message
    )


def reconcile_once(
    jobs: JobStore,
    client: redis.Redis,
    app: Celery | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    now: float | None = None,
) -> list[Requeued]:
    """One pass: re-enqueue the next segment of each stuck training job and end each stuck image job; what was
    re-enqueued (training) or ended (segment -1)."""
    now = time.time() if now is None else now
    requeued = []
    for record in stuck_image_jobs(jobs, client, grace_seconds, now):
        _end_lost_image_job(jobs, record, app)
        requeued.append(Requeued(record.id, -1))
    for record in stuck_training_jobs(jobs, client, grace_seconds, now):
        segment = int(record.progress.get("segments_done", 0))
        enqueue.send(segment_message(record.id, segment), app=app)
        logger.warning(
            "reconciler: job %s was running with no lease and no task (lost in a failover?); "
            "segment %d enqueued again",
            record.id,
            segment,
        )
        requeued.append(Requeued(record.id, segment))
    return requeued
