"""The input-fetch task: download a create's URL inputs on the egress queue, then send the job's own tasks."""

from __future__ import annotations

from celery import Task

from workers.celery_app import app
from workers.contracts.fetch import FETCH_TASK, FetchPayload
from workers.json_types import JSONObject
from workers.tasks.runtime import context, job_outcome


@app.task(name=FETCH_TASK, bind=True)
def fetch_inputs(self: Task, payload: JSONObject) -> None:
    p = FetchPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.fetch import run_fetch

        run_fetch(context(), p)
