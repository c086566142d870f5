"""The training kind's task: one bounded segment, which hands the run on to the next segment."""

from __future__ import annotations

import logging

from celery import Task

from workers import enqueue
from workers.celery_app import app
from workers.contracts.training import SEGMENT_TASK, TrainSegmentPayload, segment_message
from workers.json_types import JSONObject
from workers.tasks.runtime import context, job_outcome, redelivered, shutdown_requested

logger = logging.getLogger(__name__)

# A busy training lease is retried this often; the holder finishes its segment or its lease expires.
BUSY_LEASE_COUNTDOWN_SECONDS = 5


@app.task(name=SEGMENT_TASK, bind=True)
def train_segment(self: Task, payload: JSONObject) -> None:
    p = TrainSegmentPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.train import SegmentOutcome, run_segment

        outcome = run_segment(
            context(),
            p.job_id,
            p.segment,
            redelivered=redelivered(self),
            shutdown_requested=shutdown_requested,
        )
        if outcome == SegmentOutcome.paused:
            enqueue.send(segment_message(p.job_id, p.segment + 1))
        elif outcome == SegmentOutcome.busy:
            logger.info(
                "job %s: lease busy; segment %d retried in %d s",
                p.job_id,
                p.segment,
                BUSY_LEASE_COUNTDOWN_SECONDS,
            )
            enqueue.send(segment_message(p.job_id, p.segment, countdown=BUSY_LEASE_COUNTDOWN_SECONDS))
