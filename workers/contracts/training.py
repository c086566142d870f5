"""The training kind: a run of bounded segments (each resumes from the latest checkpoint and enqueues the
next) that ends in a new model; its spec holds the mode, the hyperparameters and the dataset zips."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workers import keys
from workers.contracts.base import JobKind, Message, Payload, Queues, Result, job_prefixes, task_id
from workers.keys import validate_key

if TYPE_CHECKING:
    from workers.jobstore import JobRecord
    from workers.settings import ServiceSettings

SEGMENT_TASK = "animegan.train_segment"


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
    color_stats: float | None = Field(None, ge=0, le=1000, description="L1 of per-image chroma mean and sd")
    outline: float | None = Field(None, ge=0, le=1000, description="L1 of the dark-line (black-hat) maps")
    adv: float | None = Field(None, ge=0, le=1000, description="LSGAN term of G; 0 trains no discriminator")
    feature_matching: float | None = Field(None, ge=0, le=1000, description="L1 of D's features (pix2pixHD)")
    d_adv: float | None = Field(None, ge=0, le=1000, description="weight of the discriminator's loss")
    d_smooth: float | None = Field(
        None, ge=0, le=1000, description="D term: edge-smoothed targets as fakes (paired mode only)"
    )


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


class TrainSegmentPayload(Payload):
    segment: int = Field(ge=0)  # 0 for the first; each segment enqueues the next


class TrainingResult(Result):
    model: str  # the registered model's name (TrainingSpec.name), usable by stylize jobs at once
    model_key: str  # its generator export in storage
    steps: int


def segment_message(job_id: str, segment: int, countdown: float | None = None) -> Message:
    """Training segment `segment` (0 starts the job); a countdown delays a retry of a busy lease."""
    payload = TrainSegmentPayload(job_id=job_id, segment=segment)
    return Message(SEGMENT_TASK, payload, task_id(job_id, "segment", segment), countdown)


def _stored(record: JobRecord) -> list[str]:
    """A run's own folders and the dataset zips the API stored for it (uploads stay: they are the tenant's)."""
    datasets = (record.params.get("datasets") or {}).values()
    found = {str(d.get("key", "")).rsplit("/", 1)[0] + "/" for d in datasets if isinstance(d, dict)}
    return [*job_prefixes(record), *sorted(p for p in found if p.startswith("datasets/"))]


def _queued(record: JobRecord, settings: ServiceSettings) -> list[str]:
    """A run that has not started has its first segment queued; later segments are sent by the one before."""
    return [task_id(record.id, "segment", 0)] if record.started_at is None else []


TRAIN = JobKind(
    name="train",
    queue=Queues.train,
    tasks=(SEGMENT_TASK,),
    spec=TrainingSpec,
    result=TrainingResult,
    task_module="workers.tasks.training",
    no_result_file="job {id} is a training run: its result is the model named in its result",
    files={"samples": keys.samples_prefix, "checkpoints": keys.checkpoints_prefix},
    queued_task_ids=_queued,
    stored_prefixes=_stored,
)
