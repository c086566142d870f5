"""What every job kind's contract is made of: the broker queues, the versioned payload base, the message a kind
asks to send, and `JobKind`, the one entry per kind that the API and the workers read (workers.contracts.registry).

Light on purpose (pydantic only): the API imports it, and nothing here imports Celery, Redis or torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, field_validator

from workers import keys
from workers.keys import SEGMENT_RE

if TYPE_CHECKING:
    from workers.jobstore import JobRecord
    from workers.settings import ServiceSettings

# Bump when a payload changes incompatibly; a worker refuses versions newer than it knows (during a rolling
# deploy, old workers must not misread new messages). Additive optional fields do not need a bump.
PAYLOAD_VERSION = 1


class Queues(StrEnum):
    """Broker queues; GPU workers consume stylize and/or train, a cheap worker consumes webhooks."""

    stylize = "stylize"  # single images, batch chunks, video segments: short tasks
    train = "train"  # training segments: long tasks, its own workers so stylize latency stays low
    webhooks = "webhooks"  # outbound HTTP deliveries: never behind a GPU job


class SizeMode(StrEnum):
    """How an image or a video frame is sized for the generator (animegan.inference.InferenceOptions)."""

    reference = "reference"  # AnimeGAN's rule: 256 if smaller, else floored to a multiple of 32
    original = "original"  # padded, run at full size, cropped back
    max_side = "max_side"  # downscaled so the longer side is at most max_side


class Payload(BaseModel):
    """Fields every task payload has. Unknown fields are ignored so newer producers can add optional ones."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = PAYLOAD_VERSION
    job_id: str

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if not 1 <= value <= PAYLOAD_VERSION:
            raise ValueError(
                f"payload version {value} is not supported by this worker (knows 1..{PAYLOAD_VERSION}); "
                "upgrade the workers before the API"
            )
        return value

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not SEGMENT_RE.match(value):
            raise ValueError(f"job id {value!r} is not a valid id")
        return value


def task_id(job_id: str, kind: str, number: int | None = None) -> str:
    """Deterministic Celery task ids, so the API can revoke a job's queued tasks without storing their ids."""
    return f"{job_id}-{kind}" if number is None else f"{job_id}-{kind}-{number}"


@dataclass(frozen=True)
class Message:
    """One task to send: what a kind's contract builds and workers.enqueue sends by name (routing by name too)."""

    task: str  # a Celery task name, "animegan.<something>"
    payload: Payload
    task_id: str  # deterministic (task_id()), so a job's queued tasks can be revoked by id
    countdown: float | None = (
        None  # seconds before a worker may run it; must stay inside the visibility timeout
    )


class Result(BaseModel):
    """Base of each kind's typed result (JobRecord.result): what a worker stores when the job succeeds."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class Download:
    """A stored file the API hands out for a job: a presigned redirect (S3) or the bytes (local backend)."""

    key: str  # the object in storage
    filename: str  # what the download is called


def _no_tasks(record: JobRecord, settings: ServiceSettings) -> list[str]:
    return []


def job_prefixes(record: JobRecord) -> list[str]:
    """The storage prefixes every job owns: its stored inputs, its outputs, its run folder (training)."""
    return [keys.inputs_prefix(record.id), keys.outputs_prefix(record.id), keys.run_prefix(record.id)]


@dataclass(frozen=True)
class JobKind:
    """One job kind, everything shared code needs to know about it: the API's create, status, list, cancel,
    results and files, and the workers' routing, all dispatch through this entry, never through an if-chain."""

    name: str  # JobRecord.kind and the API's `kind`
    queue: Queues  # every task of the kind runs there
    tasks: tuple[str, ...]  # its Celery task names
    spec: type[BaseModel]  # the typed params (JobRecord.params), built by the API, read by the workers
    result: type[Result]  # the typed result (JobRecord.result) of a succeeded job
    # The module defining its Celery tasks, imported by worker processes only (it may import the job logic
    # lazily, never torch at import); named, not imported, so the API and the contracts never load Celery tasks.
    task_module: str
    # GET /v1/jobs/{id}/result of a succeeded job: the file, or None for a kind whose result is not a file.
    result_file: Callable[[JobRecord], Download] | None = None
    # Why there is no result file (the 409's message), for a kind without one; "{id}" is the job's id.
    no_result_file: str = "job {id} has no result file"
    # GET /v1/jobs/{id}/results/{index}: one item's file as soon as it is done (None: no items).
    item_file: Callable[[JobRecord, int], Download] | None = None
    # GET /v1/jobs/{id}/files: folder name -> the key prefix of the job's files there (samples, checkpoints).
    files: Mapping[str, Callable[[str], str]] = field(default_factory=dict)
    # The task ids a canceled job may still have queued (revoked best effort; the cancel flag decides).
    queued_task_ids: Callable[[JobRecord, ServiceSettings], list[str]] = _no_tasks
    # Everything in storage DELETE /v1/jobs/{id} removes with the job (never a direct upload: the tenant's own).
    stored_prefixes: Callable[[JobRecord], list[str]] = job_prefixes
