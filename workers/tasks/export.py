"""The export kind's task: one model written as an ONNX graph."""

from __future__ import annotations

from celery import Task

from workers.celery_app import app
from workers.contracts.export import EXPORT_TASK, ExportPayload
from workers.json_types import JSONObject
from workers.tasks.runtime import context, job_outcome, redelivered


@app.task(name=EXPORT_TASK, bind=True)
def export(self: Task, payload: JSONObject) -> None:
    p = ExportPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.export import run_export

        run_export(context(), p.job_id, redelivered=redelivered(self))
