"""The video kind's tasks: one segment (the worker that writes the last one enqueues the join), and the join."""

from __future__ import annotations

from celery import Task

from workers import enqueue
from workers.celery_app import app
from workers.contracts.video import (
    JOIN_TASK,
    SEGMENT_TASK,
    JoinVideoPayload,
    VideoSegmentPayload,
    join_message,
)
from workers.json_types import JSONObject
from workers.tasks.runtime import context, job_outcome, redelivered


@app.task(name=SEGMENT_TASK, bind=True)
def video_segment(self: Task, payload: JSONObject) -> None:
    p = VideoSegmentPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.video import run_video_segment

        if run_video_segment(context(), p.job_id, p.segment, redelivered=redelivered(self)):
            enqueue.send(join_message(p.job_id))


@app.task(name=JOIN_TASK, bind=True)
def join_video(self: Task, payload: JSONObject) -> None:
    p = JoinVideoPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.video import run_join

        run_join(context(), p.job_id)
