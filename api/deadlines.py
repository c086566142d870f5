"""The deadline sweep each API replica runs in the background: a queued job whose deadline passed ends expired
(it never runs), a running one is told to stop (its worker ends it expired at its next check). Every replica
sweeps; the Lua script makes a second sweep of the same job a no-op."""

from __future__ import annotations

import asyncio
import logging

import redis
from kombu.exceptions import KombuError

from api.deps import Services
from workers import enqueue, queue_positions
from workers.contracts.registry import KINDS
from workers.contracts.webhooks import webhook_message
from workers.jobstore import JobStatus

logger = logging.getLogger(__name__)

EXPIRED_HERE = 1  # JobStore.expire: a queued job ended expired by this sweep


def sweep_once(services: Services) -> dict[str, int]:
    """Enforce the deadlines that passed; the queued jobs it ended get their terminal webhook from here."""
    outcomes = services.jobs.expire_due()
    for job_id, outcome in outcomes.items():
        if outcome != EXPIRED_HERE:
            continue
        logger.info("job %s expired in its queue (deadline passed)", job_id)
        record = services.jobs.get(job_id)
        kind = KINDS.get(record.kind) if record is not None else None
        if record is not None and kind is not None:
            queue_positions.forget(
                services.redis, kind.queue.value, kind.queued_task_ids(record, services.settings)
            )
        if record is not None and record.webhook_url:
            try:
                enqueue.send(webhook_message(job_id, JobStatus.EXPIRED.value))
            except (KombuError, redis.RedisError, OSError) as exc:
                logger.error("job %s: could not enqueue its webhook: %s", job_id, exc)
    return outcomes


async def sweep_deadlines(services: Services, interval_seconds: float) -> None:
    """Run sweep_once every `interval_seconds` until cancelled (in a thread: the job store is synchronous)."""
    while True:
        try:
            await asyncio.to_thread(sweep_once, services)
        except redis.RedisError as exc:
            logger.warning("deadline sweep failed (retrying): %s", exc)
        await asyncio.sleep(interval_seconds)
