"""Re-enqueues training jobs stuck in `running`: no live lease, and no task of theirs anywhere in the broker.

That is what a Redis failover that lost a task message leaves behind (the replica had not received the
message, or the unacked copy, before the primary went): nothing would ever run the job again. Re-enqueueing
is safe: a segment that finds the lease held retries later, one that already ran (segments_done) drops itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers import enqueue, redis_keys
from workers.contracts.base import Queues
from workers.contracts.training import TRAIN, segment_message
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


def broker_mentions(client: redis.Redis, job_ids: set[str]) -> set[str]:
    """The ids among `job_ids` that some message in the train queue or the unacked hash names (task ids and
    argsrepr carry the job id in clear text); one LRANGE and one HVALS, run once per reconcile pass."""
    if not job_ids:
        return set()
    messages = [*client.lrange(Queues.train.value, 0, -1), *client.hvals(redis_keys.KOMBU_UNACKED)]
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


def reconcile_once(
    jobs: JobStore,
    client: redis.Redis,
    app: Celery | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> list[Requeued]:
    """One pass: re-enqueue the next segment of each stuck training job; what was re-enqueued."""
    requeued = []
    for record in stuck_training_jobs(jobs, client, grace_seconds, time.time()):
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
