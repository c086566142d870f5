"""Request and response models of the HTTP API, named by role (`*Form` in, `*Public` out), with examples.

Every model refuses unknown fields so a typo is a 422 naming the field rather than a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# The forms use the job specs' own enums (and trainings the contract's TrainingHyperparameters), so a form and
# the spec built from it share one vocabulary.
from workers.contracts.base import SizeMode
from workers.contracts.training import TrainingMode
from workers.contracts.webhooks import WebhookEvent
from workers.jobstore import JobStatus
from workers.json_types import JSONObject
from workers.media import ImageFormat


class UploadPurpose(StrEnum):
    image = "image"  # one input image for /v1/stylize or /v1/batches
    archive = "archive"  # a zip of images for /v1/batches
    dataset = "dataset"  # a zip of photos or of style images for /v1/trainings
    model = "model"  # a generator file for /v1/models
    video = "video"  # a clip for /v1/videos


class ErrorDetail(BaseModel):
    code: str = Field(examples=["too_many_pixels"])
    message: str = Field(examples=["photo.jpg: 9000x9000 = 81000000 pixels is above the limit of 40000000"])


class ErrorResponse(BaseModel):
    error: ErrorDetail


class FormModel(BaseModel):
    """A multipart form's fields: unknown ones are refused, except the file parts the route reads itself."""

    model_config = ConfigDict(extra="forbid")
    file_parts: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _drop_file_parts(cls, data: Any) -> Any:  # Any: a before-validator sees the raw input, whatever it is
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in cls.file_parts}
        return data


class JobForm(FormModel):
    """The fields every create of a job takes, whatever its kind (api.job_options reads them)."""

    webhook_url: str | None = Field(
        None, max_length=2048, description="POSTed the job when it ends (http/https)"
    )
    webhook_events_filter: list[WebhookEvent] = Field(
        default_factory=list,
        description="which events POST to webhook_url (repeat the field): start, progress, completed; "
        "default: completed only",
    )
    deadline: datetime | None = Field(
        None,
        description="when the job expires (RFC 3339 with a zone, or epoch seconds); queued, it never runs, "
        "running, it is stopped; or send the Cancel-After header instead",
        examples=["2026-12-04T20:00:00Z"],
    )

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the deadline's time zone, e.g. 2026-12-04T20:00:00Z")
        return value

    @model_validator(mode="after")
    def _filter_needs_url(self) -> JobForm:
        if self.webhook_events_filter and not self.webhook_url:
            raise ValueError(
                "webhook_events_filter picks the events sent to webhook_url; send a webhook_url too"
            )
        return self

    @property
    def deadline_epoch(self) -> float | None:
        return self.deadline.timestamp() if self.deadline is not None else None


class StyleOptions(JobForm):
    """Options shared by single-image and batch stylization."""

    model: str = Field(
        min_length=1, max_length=64, description="model name (GET /v1/models)", examples=["hayao"]
    )
    format: ImageFormat = Field(ImageFormat.png, description="output image format")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality")
    size_mode: SizeMode = Field(SizeMode.reference, description="how the input is sized for the generator")
    # validate_default: a missing max_side is checked against size_mode too.
    max_side: int | None = Field(
        None,
        ge=32,
        le=8192,
        validate_default=True,
        description="longer side in pixels: required with size_mode=max_side, refused with any other size_mode",
    )
    faces: bool = Field(
        True,
        description="portrait path: each face found is stylized again, enlarged, and blended back (false: off)",
    )

    # A field validator, not a model one: its error is located at max_side, so the 422 names that field
    # (a model validator's error has no location, which answered "fields": [""]).
    @field_validator("max_side")
    @classmethod
    def _max_side_matches_mode(cls, max_side: int | None, info: ValidationInfo) -> int | None:
        size_mode = info.data.get("size_mode")
        if size_mode is None:  # size_mode itself was invalid; its own error says so
            return max_side
        if size_mode == SizeMode.max_side and max_side is None:
            raise ValueError("max_side is required when size_mode is max_side")
        if size_mode != SizeMode.max_side and max_side is not None:
            raise ValueError(f"max_side is only used with size_mode=max_side (size_mode is {size_mode})")
        return max_side


class X264Preset(StrEnum):
    ultrafast = "ultrafast"
    superfast = "superfast"
    veryfast = "veryfast"
    faster = "faster"
    fast = "fast"
    medium = "medium"
    slow = "slow"
    slower = "slower"
    veryslow = "veryslow"


class VideoForm(JobForm):
    """POST /v1/videos form fields; the clip is the `file` part or `upload_id` of a direct upload."""

    file_parts: ClassVar[tuple[str, ...]] = ("file",)

    model: str = Field(min_length=1, max_length=64, description="model name (GET /v1/models)")
    size_mode: SizeMode = Field(SizeMode.original, description="frame sizing: original keeps the clip's size")
    max_side: int | None = Field(
        None, ge=32, le=8192, validate_default=True, description="longer side: only with size_mode=max_side"
    )
    crf: int = Field(18, ge=0, le=51, description="H.264 quality (x264 CRF): lower is better and larger")
    preset: X264Preset = Field(X264Preset.medium, description="x264 preset: encode speed against file size")
    upload_id: str | None = Field(
        None, max_length=64, description="id from POST /v1/uploads instead of a file"
    )

    @field_validator("max_side")
    @classmethod
    def _max_side_matches_mode(cls, max_side: int | None, info: ValidationInfo) -> int | None:
        return StyleOptions._max_side_matches_mode(max_side, info)


class StylizeForm(StyleOptions):
    """POST /v1/stylize form fields; the image is the `file` part or `upload_id` of a direct upload."""

    file_parts: ClassVar[tuple[str, ...]] = ("file",)

    upload_id: str | None = Field(
        None, max_length=64, description="id from POST /v1/uploads instead of a file"
    )


class BatchForm(StyleOptions):
    """POST /v1/batches form fields; images come as `files` parts, an `archive` zip part, or `upload_ids`."""

    file_parts: ClassVar[tuple[str, ...]] = ("files", "archive")

    upload_ids: list[str] = Field(default_factory=list, description="ids of direct uploads (images or zips)")


class TrainingForm(JobForm):
    """POST /v1/trainings form fields; datasets are `photos`/`styles`/`targets` zip parts or their upload ids."""

    file_parts: ClassVar[tuple[str, ...]] = ("photos", "styles", "targets")

    name: str = Field(min_length=1, max_length=64, description="name of the model the run registers")
    mode: TrainingMode = Field(
        TrainingMode.unpaired,
        description="unpaired: photos + styles; paired: photos + targets (same file names); "
        "distill: photos + teacher",
    )
    hyperparameters: str = Field(
        "{}",
        description="JSON object, schema #/components/schemas/TrainingHyperparameters",
        examples=['{"preset": "v2-hayao", "image_size": 256, "epochs": 10, "max_total_steps": 2000}'],
    )
    photos_upload_id: str | None = Field(None, max_length=64)
    styles_upload_id: str | None = Field(None, max_length=64)
    targets_upload_id: str | None = Field(None, max_length=64)
    teacher: str | None = Field(None, max_length=64, description="distill: the model whose outputs to learn")
    fine_tune_from: str | None = Field(None, max_length=64, description="start G from this model's weights")


class UploadCreate(BaseModel):
    """POST /v1/uploads body: what will be uploaded, so the limit for its purpose applies."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"purpose": "dataset", "size": 52428800, "filename": "photos.zip"}]},
    )

    purpose: UploadPurpose
    size: int = Field(gt=0, description="exact size in bytes of the file to upload")
    filename: str | None = Field(None, max_length=255, description="display name only; never used as a key")
    content_type: str | None = Field(None, max_length=255)


class UploadPublic(BaseModel):
    id: str
    purpose: UploadPurpose
    size: int
    url: str = Field(
        description="PUT exactly `size` bytes here (S3 presigned URL, which signs that Content-Length, or this "
        "API with the same bearer key); an upload of another size is refused and deleted"
    )
    method: str = "PUT"
    headers: dict[str, str] = Field(default_factory=dict, description="headers to send with the PUT")
    expires_at: float
    received: bool = Field(False, description="whether the bytes have arrived")


class JobLinks(BaseModel):
    self: str
    events: str
    cancel: str
    result: str | None = None
    files: str | None = None


class QueuePublic(BaseModel):
    """Where a queued job stands (workers.queue_positions; README, "Queue position and ETA")."""

    queue: str = Field(description="the broker queue its tasks wait in", examples=["stylize"])
    position: int = Field(description="tasks sent to that queue before this job's first one, not started yet")
    workers: int = Field(description="workers serving the queue now (watchdog ticked within 60 s)")
    task_seconds: float | None = Field(
        None, description="mean run time of one task of this model on this queue, recently; null: no history"
    )
    basis: str = Field(description="what the estimate is computed from, in words")
    starts_at: float | None = Field(
        None, description="estimated start, epoch seconds: now + position x task_seconds / workers"
    )
    ends_at: float | None = Field(
        None, description="estimated end: starts_at + the job's own tasks x task_seconds / workers"
    )


class JobPublic(BaseModel):
    """A job as its owner sees it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9c1f0e6a2b7d4f3a8e5c1d2b3a4f5e6d",
                    "kind": "batch",
                    "status": "running",
                    "progress": {"done": 40, "total": 200},
                    "created_at": 1764064800.0,
                    "links": {"self": "/v1/jobs/9c1f...", "events": "/v1/jobs/9c1f.../events"},
                }
            ]
        }
    )

    id: str
    kind: str
    status: JobStatus = Field(
        description="queued, running, then one final status: succeeded (every item did), partial (a batch some "
        "of whose images failed: `result` holds the others, `error` counts the failures by code), failed, "
        "canceled, or expired (its deadline passed)"
    )
    params: JSONObject = Field(default_factory=dict)
    progress: JSONObject = Field(default_factory=dict)
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: ErrorDetail | None = None
    result: JSONObject | None = None
    webhook_url: str | None = None
    webhook_events_filter: list[WebhookEvent] = Field(
        default_factory=lambda: [WebhookEvent.completed], description="the events POSTed to webhook_url"
    )
    deadline: float | None = Field(None, description="when the job expires (epoch seconds); null: never")
    queue: QueuePublic | None = Field(
        None,
        description="while queued: its position and estimated start and end (GET of one job, its events)",
    )
    links: JobLinks


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")


class JobFile(BaseModel):
    name: str = Field(examples=["samples/step-000200.png"])
    kind: str = Field(examples=["sample"])
    url: str


class JobFileList(BaseModel):
    items: list[JobFile]


class ModelPublic(BaseModel):
    name: str
    public: bool
    source: str
    config: JSONObject = Field(default_factory=dict)
    created_at: float | None = None
    size: int | None = None
    description: str | None = Field(None, description="what the model is and where it comes from")


class ModelList(BaseModel):
    items: list[ModelPublic]
