"""The stylize kind's task: one image."""

from __future__ import annotations

from celery import Task

from workers.celery_app import app
from workers.contracts.images import STYLIZE_TASK, StylizePayload
from workers.json_types import JSONObject
from workers.tasks.runtime import context, job_outcome, redelivered


@app.task(name=STYLIZE_TASK, bind=True)
def stylize(self: Task, payload: JSONObject) -> None:
    p = StylizePayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.stylize import run_stylize

        run_stylize(context(), p.job_id, p.input_key, redelivered=redelivered(self))
