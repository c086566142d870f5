"""The export kind: one model written as an ONNX graph into storage (a download at GET /v1/jobs/{id}/result)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from workers import keys, media
from workers.contracts.base import Download, JobKind, Message, Payload, Queues, Result, task_id

if TYPE_CHECKING:
    from workers.jobstore import JobRecord
    from workers.settings import ServiceSettings

EXPORT_TASK = "animegan.export"
ONNX = media.by_format("onnx")
# The opsets an export may ask for: the exporter's floor to the newest the pinned onnxruntime runs
# (animegan.onnx_graph.MIN_EXPORT_OPSET / MAX_OPSET, restated: the contracts import nothing of the library).
MIN_OPSET, MAX_OPSET = 17, 26


class ExportSpec(BaseModel):
    """An export job: which model (as its owner sees it) and how to write it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1)
    format: str = Field("onnx", pattern="^onnx$")  # the one format so far
    opset: int = Field(MIN_OPSET, ge=MIN_OPSET, le=MAX_OPSET)


class ExportPayload(Payload):
    """Export the job's model (ExportSpec in its record)."""


class ExportResult(Result):
    output_key: str  # keys.output(job, 0, "onnx")
    content_type: str
    bytes: int
    opset: int
    layout: str  # the graph's input layout, NCHW
    sha256: str


def export_message(job_id: str) -> Message:
    """The one task of an export job."""
    return Message(EXPORT_TASK, ExportPayload(job_id=job_id), task_id(job_id, "export"))


def output_key(job_id: str) -> str:
    return keys.output(job_id, 0, ONNX.ext)


def _result_file(record: JobRecord) -> Download:
    key = (record.result or {}).get("output_key") or output_key(record.id)
    model = record.params.get("model") or record.id
    return Download(key, f"{model}.{ONNX.ext}")


def _queued(record: JobRecord, settings: ServiceSettings) -> list[str]:
    return [task_id(record.id, "export")]


EXPORT = JobKind(
    name="export",
    queue=Queues.stylize,  # seconds of CPU on a worker that has the model library, like one image
    tasks=(EXPORT_TASK,),
    spec=ExportSpec,
    result=ExportResult,
    task_module="workers.tasks.export",
    result_file=_result_file,
    queued_task_ids=_queued,
)
