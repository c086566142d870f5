"""The batch kind's tasks: a chunk of images, and the finalizer of a batch whose last chunk gave up."""

from __future__ import annotations

from celery import Task

from workers import enqueue
from workers.celery_app import app
from workers.contracts.batch import (
    CHUNK_TASK,
    FINALIZE_TASK,
    BatchChunkPayload,
    FinalizeBatchPayload,
    finalize_message,
)
from workers.json_types import JSONObject
from workers.tasks.runtime import context, job_outcome, redelivered


@app.task(name=CHUNK_TASK, bind=True)
def batch_chunk(self: Task, payload: JSONObject) -> None:
    p = BatchChunkPayload.model_validate(payload)

    def give_up(message: str) -> None:
        # Storage outlasted the budget: this chunk's unfinished images fail, the finished ones (of this and
        # every other chunk) stay, and the batch is finalized by a task with a retry budget of its own.
        from workers.jobs.batch import fail_unfinished

        fail_unfinished(context(), p.job_id, p.indices, "storage_unavailable", message)
        enqueue.send(finalize_message(p.job_id))

    with job_outcome(self, p.job_id, give_up):
        from workers.jobs.batch import run_chunk

        items = list(zip(p.indices, p.input_keys, strict=True))
        run_chunk(context(), p.job_id, items, redelivered=redelivered(self))


@app.task(name=FINALIZE_TASK, bind=True)
def finalize_batch(self: Task, payload: JSONObject) -> None:
    """Builds results.zip and ends a batch whose last chunk gave up on storage (batch_chunk's give_up)."""
    p = FinalizeBatchPayload.model_validate(payload)

    def give_up(message: str) -> None:
        from workers.jobs import fail

        fail(context(), p.job_id, "storage_unavailable", f"{message}; results.zip could not be written, the "
             f"finished images stay available one by one at /v1/jobs/{p.job_id}/results/<index>")  # fmt: skip

    with job_outcome(self, p.job_id, give_up):
        from workers.jobs.batch import maybe_finalize

        maybe_finalize(context(), p.job_id)
