"""What travels between the API and the workers: queue and task names, versioned payload models (ids and storage
keys, never image bytes), the typed job spec of each kind (stored in the job record) and enqueue helpers that
send by task name, so the API never imports workers.tasks or torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workers import media
from workers.keys import SEGMENT_RE, validate_key
from workers.media import ImageFormat, Media

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

# Bump when a payload changes incompatibly; a worker refuses versions newer than it knows (during a rolling
# deploy, old workers must not misread new messages). Additive optional fields do not need a bump.
PAYLOAD_VERSION = 1


class Queues(StrEnum):
    """Broker queues; GPU workers consume stylize and/or train, a cheap worker consumes webhooks."""

    stylize = "stylize"  # single images and batch chunks: short tasks
    train = "train"  # training segments: long tasks, its own workers so stylize latency stays low
    webhooks = "webhooks"  # outbound HTTP deliveries: never behind a GPU job


class TaskNames(StrEnum):
    stylize = "animegan.stylize"
    batch_chunk = "animegan.batch_chunk"
    finalize_batch = "animegan.finalize_batch"
    train_segment = "animegan.train_segment"
    deliver_webhook = "animegan.deliver_webhook"
    video_segment = "animegan.video_segment"
    join_video = "animegan.join_video"


TASK_QUEUES: dict[TaskNames, Queues] = {
    TaskNames.stylize: Queues.stylize,
    TaskNames.batch_chunk: Queues.stylize,
    TaskNames.finalize_batch: Queues.stylize,
    TaskNames.train_segment: Queues.train,
    TaskNames.deliver_webhook: Queues.webhooks,
    TaskNames.video_segment: Queues.stylize,
    TaskNames.join_video: Queues.stylize,
}


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


class StylizePayload(Payload):
    input_key: str  # a file part the API stored, or a direct upload's own object; options: the StylizeSpec

    @field_validator("input_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return validate_key(value)


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


class TrainSegmentPayload(Payload):
    segment: int = Field(ge=0)  # 0 for the first; each segment enqueues the next


class WebhookPayload(Payload):
    event: str = Field(min_length=1, max_length=64)  # what happened, e.g. the terminal status "succeeded"


class VideoSegmentPayload(Payload):
    segment: int = Field(ge=0)  # index into VideoSpec.segments


class JoinVideoPayload(Payload):
    """Concatenate a video job's segments and add the source's audio, once every segment is written."""


class SizeMode(StrEnum):
    reference = "reference"  # AnimeGAN's rule: 256 if smaller, else floored to a multiple of 32
    original = "original"  # padded, run at full size, cropped back
    max_side = "max_side"  # downscaled so the longer side is at most max_side


# Job specs: the typed params of each job kind. The API builds one from the validated form, stores its JSON in
# the job record, and the workers parse the record back into the same class (workers.jobs.job_spec); extra
# fields are ignored so an API that adds an optional one does not break workers still running the old code.


class ImageSpec(BaseModel):
    """How a stylize or batch job produces its images."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1)
    format: ImageFormat = ImageFormat.png
    quality: int = Field(95, ge=1, le=100)  # JPEG/WebP quality
    size_mode: SizeMode = SizeMode.reference
    max_side: int | None = Field(None, ge=32, le=8192)

    @property
    def media(self) -> Media:
        """Extension and content type of the outputs."""
        return media.by_format(self.format)


class StylizeSpec(ImageSpec):
    filename: str = "image"  # display name of the input; never a storage key
    width: int | None = None  # of the input, as the API read it
    height: int | None = None


class BatchSpec(ImageSpec):
    filenames: list[str] = Field(default_factory=list)  # display names, one per image, in input order


class VideoSegmentSpec(BaseModel):
    """Frames start_pts <= pts < end_pts (None: to the end) of the source, in its video time base."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    start_pts: int  # a keyframe
    end_pts: int | None
    frames: int = Field(ge=0)


class VideoSpec(BaseModel):
    """A video job: what the API stored after probing the clip, read back by the workers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1)
    size_mode: SizeMode = SizeMode.original
    max_side: int | None = Field(None, ge=32, le=8192)
    crf: int = Field(18, ge=0, le=51)  # H.264 quality, lower is better
    preset: str = "medium"  # x264 preset
    source_key: str  # the clip: a direct upload's object, or where the API stored the file part
    filename: str = "video"
    time_base: str  # the source video stream's time base, "num/den"
    frames: int = Field(ge=1)
    width: int = Field(ge=1)  # as displayed, before sizing
    height: int = Field(ge=1)
    fps: float
    duration: float
    audio_codec: str | None = None
    segments: list[VideoSegmentSpec] = Field(min_length=1)

    @field_validator("source_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return validate_key(value)


class TrainPreset(StrEnum):
    v1 = "v1"
    v2_hayao = "v2-hayao"
    v2_paprika = "v2-paprika"
    v2_shinkai = "v2-shinkai"
    paired = "paired"
    distill = "distill"


class TrainingMode(StrEnum):
    unpaired = "unpaired"  # photos + style images: the AnimeGAN recipe (the worker needs VGG19 weights)
    paired = "paired"  # photos + targets of the same file names: learn photo -> target
    distill = "distill"  # photos + a teacher model: a (smaller) student learns the teacher's outputs


# The dataset zips each mode reads, and the preset a mode starts from when none is given.
MODE_PARTS = {
    TrainingMode.unpaired: ("photos", "styles"),
    TrainingMode.paired: ("photos", "targets"),
    TrainingMode.distill: ("photos",),
}
MODE_PRESETS = {
    TrainingMode.unpaired: TrainPreset.v2_hayao,
    TrainingMode.paired: TrainPreset.paired,
    TrainingMode.distill: TrainPreset.distill,
}


class LossWeightOverrides(BaseModel):
    """Overrides of the preset's LossWeights (unpaired mode); omitted ones keep the preset's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    g_adv: float | None = Field(None, ge=0, le=1000, description="LSGAN term of G")
    d_adv: float | None = Field(None, ge=0, le=1000, description="multiplies the whole D loss")
    con: float | None = Field(None, ge=0, le=100, description="VGG content loss (and the init phase's)")
    sty: float | None = Field(None, ge=0, le=100, description="Gram style loss")
    color: float | None = Field(None, ge=0, le=1000, description="YUV colour loss against the photo")
    tv: float | None = Field(None, ge=0, le=100, description="total variation")


class PairedLossWeightOverrides(BaseModel):
    """Overrides of the preset's PairedLossWeights (paired and distill modes); omitted ones keep the preset's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel: float | None = Field(None, ge=0, le=1000, description="L1 to the target")
    ssim: float | None = Field(None, ge=0, le=1000, description="1 - SSIM to the target")
    gradient: float | None = Field(None, ge=0, le=1000, description="L1 of image gradients")
    color: float | None = Field(None, ge=0, le=1000, description="YUV colour loss")
    tv: float | None = Field(None, ge=0, le=1000, description="total variation")
    perceptual: float | None = Field(None, ge=0, le=1000, description="VGG19 feature L1 (needs VGG weights)")
    adv: float | None = Field(None, ge=0, le=1000, description="LSGAN term of G; 0 trains no discriminator")
    d_adv: float | None = Field(None, ge=0, le=1000, description="weight of the discriminator's loss")


class TrainingHyperparameters(BaseModel):
    """Training options: a preset plus overrides named as TrainConfig's fields; omitted fields keep the
    preset's reference values. The public form of POST /v1/trainings, and part of the TrainingSpec."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"preset": "v2-hayao", "image_size": 256, "epochs": 10, "max_total_steps": 2000}]
        },
    )

    preset: TrainPreset | None = Field(
        None, description="defaults: v2-hayao (unpaired mode), paired (paired mode), distill (teacher mode)"
    )
    image_size: int | None = Field(None, ge=32, le=1024, multiple_of=32, description="training crop size")
    batch_size: int | None = Field(None, ge=1, le=64)
    epochs: int | None = Field(None, ge=1, le=1000)
    init_epochs: int | None = Field(None, ge=0, le=100, description="content-only warm-up epochs")
    init_lr: float | None = Field(None, gt=0, le=1, description="Adam lr of the warm-up")
    g_lr: float | None = Field(None, gt=0, le=1, description="Adam lr of G")
    d_lr: float | None = Field(None, gt=0, le=1, description="Adam lr of D")
    losses: LossWeightOverrides | None = None
    paired_losses: PairedLossWeightOverrides | None = None
    base_channels: int | None = Field(None, ge=4, le=128, description="generator width (v2 reference: 32)")
    max_total_steps: int | None = Field(None, ge=1, le=10_000_000, description="stop after this many steps")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


class TrainingTuning(BaseModel):
    """TrainConfig fields outside the public API: operators and tests set them in a job record directly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint_every: int | None = Field(None, ge=1)
    sample_every: int | None = Field(None, ge=0)
    discriminator_channels: int | None = Field(None, ge=2)  # DiscriminatorConfig.base_channels
    skip_init: bool = True  # fine-tuning skips the content-only warm-up


class DatasetArchive(BaseModel):
    """One dataset zip of a training job, read where it lies (a direct upload is not copied)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    # Of the bytes the API checked; the worker refuses an object that changed since (an upload PUT again).
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return validate_key(value)


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=64)  # of the model the run registers
    mode: TrainingMode = TrainingMode.unpaired
    hyperparameters: TrainingHyperparameters = TrainingHyperparameters()
    datasets: dict[str, DatasetArchive]  # part (MODE_PARTS[mode]) -> its zip
    fine_tune_from: str | None = None  # a model name: start G from its weights
    teacher: str | None = None  # distill: the model whose outputs the student learns
    tuning: TrainingTuning = TrainingTuning()

    @model_validator(mode="after")
    def _parts_of_mode(self) -> TrainingSpec:
        if sorted(self.datasets) != sorted(MODE_PARTS[self.mode]):
            raise ValueError(
                f"the {self.mode.value} mode reads datasets {', '.join(MODE_PARTS[self.mode])}; "
                f"got {', '.join(sorted(self.datasets)) or 'none'}"
            )
        return self

    @property
    def preset(self) -> TrainPreset:
        return self.hyperparameters.preset or MODE_PRESETS[self.mode]

    @property
    def dataset_id(self) -> str:
        """Names this job's unpacked dataset in a worker's cache: the same archives unpacked the same way (paired
        keeps file names) share one entry."""
        parts = {part: archive.sha256 or archive.key for part, archive in self.datasets.items()}
        text = json.dumps({"mode": self.mode.value, "parts": parts}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def task_id(job_id: str, kind: str, number: int | None = None) -> str:
    """Deterministic Celery task ids, so the API can revoke a job's queued tasks without storing their ids."""
    return f"{job_id}-{kind}" if number is None else f"{job_id}-{kind}-{number}"


def _send(
    name: TaskNames, payload: Payload, tid: str, app: Celery | None, countdown: float | None = None
) -> str:
    if app is None:
        from workers.celery_app import get_app

        app = get_app()
    if countdown is not None:
        # A delayed message waits unacked inside a worker; past the visibility timeout the broker hands it
        # out again, and again (kombu#337), so a delay must stay well inside that timeout.
        visibility = app.conf.broker_transport_options.get("visibility_timeout", 3600)
        if not 0 <= countdown < visibility:
            raise ValueError(
                f"countdown {countdown} s for {name} must be at least 0 and shorter than the broker's visibility "
                f"timeout ({visibility} s); schedule longer waits differently"
            )
    # Routing to the queue comes from the app's task_routes (celery_app.py), the same table the workers use.
    app.send_task(str(name), args=[payload.model_dump(mode="json")], task_id=tid, countdown=countdown)
    logger.debug("sent %s %s for job %s", name, tid, payload.job_id)
    return tid


def enqueue_stylize(job_id: str, input_key: str, *, app: Celery | None = None) -> str:
    payload = StylizePayload(job_id=job_id, input_key=input_key)
    return _send(TaskNames.stylize, payload, task_id(job_id, "stylize"), app)


def enqueue_batch(
    job_id: str, input_keys: list[str], chunk_size: int, *, app: Celery | None = None
) -> list[str]:
    """Fan a batch out into chunk tasks of `chunk_size` images; item i is input_keys[i]."""
    if chunk_size < 1 or not input_keys:
        raise ValueError(
            f"enqueue_batch({job_id}): need chunk_size >= 1 and inputs, got {chunk_size}, {len(input_keys)}"
        )
    ids = []
    for number, start in enumerate(range(0, len(input_keys), chunk_size)):
        indices = list(range(start, min(start + chunk_size, len(input_keys))))
        payload = BatchChunkPayload(
            job_id=job_id, indices=indices, input_keys=input_keys[start : indices[-1] + 1]
        )
        ids.append(_send(TaskNames.batch_chunk, payload, task_id(job_id, "chunk", number), app))
    return ids


def enqueue_finalize_batch(job_id: str, *, app: Celery | None = None) -> str:
    return _send(
        TaskNames.finalize_batch, FinalizeBatchPayload(job_id=job_id), task_id(job_id, "finalize"), app
    )


def enqueue_train_segment(
    job_id: str, segment: int, *, countdown: float | None = None, app: Celery | None = None
) -> str:
    payload = TrainSegmentPayload(job_id=job_id, segment=segment)
    return _send(TaskNames.train_segment, payload, task_id(job_id, "segment", segment), app, countdown)


def enqueue_training(job_id: str, *, app: Celery | None = None) -> str:
    """Start a training job: its first segment."""
    return enqueue_train_segment(job_id, 0, app=app)


def enqueue_webhook(
    job_id: str, event: str, *, countdown: float | None = None, app: Celery | None = None
) -> str:
    payload = WebhookPayload(job_id=job_id, event=event)
    return _send(TaskNames.deliver_webhook, payload, task_id(job_id, f"webhook-{event}"), app, countdown)


def enqueue_video(job_id: str, segment_count: int, *, app: Celery | None = None) -> list[str]:
    """Fan a video job out into one task per segment; the worker that writes the last one enqueues the join."""
    if segment_count < 1:
        raise ValueError(f"enqueue_video({job_id}): need at least one segment, got {segment_count}")
    return [
        _send(
            TaskNames.video_segment,
            VideoSegmentPayload(job_id=job_id, segment=n),
            task_id(job_id, "video-segment", n),
            app,
        )
        for n in range(segment_count)
    ]


def enqueue_join_video(job_id: str, *, app: Celery | None = None) -> str:
    return _send(TaskNames.join_video, JoinVideoPayload(job_id=job_id), task_id(job_id, "video-join"), app)


def revoke_queued(
    job_id: str, chunk_count: int = 0, *, video_segments: int = 0, app: Celery | None = None
) -> list[str]:
    """Ask workers to drop a canceled job's not-yet-started stylize/batch tasks (best effort: the cancel flag in
    the job record is what actually stops work; revoked ids live only in worker memory)."""
    if app is None:
        from workers.celery_app import get_app

        app = get_app()
    ids = [task_id(job_id, "stylize")] + [task_id(job_id, "chunk", n) for n in range(chunk_count)]
    ids += [task_id(job_id, "video-segment", n) for n in range(video_segments)]
    app.control.revoke(ids)
    return ids
