"""The batch kind: many images with one model, fanned out into chunk tasks, closed by one finalizer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator

from workers import keys
from workers.contracts.base import Download, JobKind, Message, Payload, Queues, Result, task_id
from workers.contracts.images import ImageSpec, image_item
from workers.json_types import JSONObject
from workers.keys import validate_key

if TYPE_CHECKING:
    from workers.jobstore import JobRecord
    from workers.settings import ServiceSettings

CHUNK_TASK = "animegan.batch_chunk"
FINALIZE_TASK = "animegan.finalize_batch"


class BatchSpec(ImageSpec):
    filenames: list[str] = Field(default_factory=list)  # display names, one per image, in input order


class BatchChunkPayload(Payload):
    indices: list[int] = Field(min_length=1)  # positions of these images in the batch (output file numbers)
    input_keys: list[str] = Field(min_length=1)  # one per index, stored by the API or direct uploads

    @field_validator("input_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        return [validate_key(key) for key in value]

    @model_validator(mode="after")
    def _same_length(self) -> BatchChunkPayload:
        if len(self.indices) != len(self.input_keys) or min(self.indices) < 0:
            raise ValueError(
                f"batch chunk of job {self.job_id}: {len(self.indices)} indices for {len(self.input_keys)} keys"
                " (need one non-negative index per key)"
            )
        return self


class FinalizeBatchPayload(Payload):
    """Build the results archive and close the batch once every item is done or failed."""


class BatchResult(Result):
    archive_key: str  # keys.output_archive(job): every output, plus errors.json when some failed
    outputs: list[JSONObject]  # {"index", "key"} of each image written
    errors: list[JSONObject]  # {"index", "code", "message"} of each image that failed
    total: int
    # error code -> how many images failed with it (a partial job's summary); empty when all succeeded
    failures: dict[str, int] = Field(default_factory=dict)


def chunk_messages(job_id: str, input_keys: list[str], chunk_size: int) -> list[Message]:
    """A batch's chunk tasks of `chunk_size` images each; item i is input_keys[i]."""
    if chunk_size < 1 or not input_keys:
        raise ValueError(
            f"batch {job_id}: need chunk_size >= 1 and inputs, got {chunk_size}, {len(input_keys)}"
        )
    messages = []
    for number, start in enumerate(range(0, len(input_keys), chunk_size)):
        indices = list(range(start, min(start + chunk_size, len(input_keys))))
        payload = BatchChunkPayload(
            job_id=job_id, indices=indices, input_keys=input_keys[start : indices[-1] + 1]
        )
        messages.append(Message(CHUNK_TASK, payload, task_id(job_id, "chunk", number)))
    return messages


def finalize_message(job_id: str) -> Message:
    return Message(FINALIZE_TASK, FinalizeBatchPayload(job_id=job_id), task_id(job_id, "finalize"))


def _result_file(record: JobRecord) -> Download:
    key = (record.result or {}).get("archive_key") or keys.output_archive(record.id)
    return Download(key, f"{record.id}.zip")


def _queued(record: JobRecord, settings: ServiceSettings) -> list[str]:
    chunks = -(-int(record.progress.get("total", 0)) // settings.batch_chunk_size)
    return [task_id(record.id, "chunk", n) for n in range(chunks)]


BATCH = JobKind(
    name="batch",
    queue=Queues.stylize,
    tasks=(CHUNK_TASK, FINALIZE_TASK),
    spec=BatchSpec,
    result=BatchResult,
    task_module="workers.tasks.batch",
    result_file=_result_file,
    item_file=image_item,
    queued_task_ids=_queued,
)
