"""The stylize kind (one image) and the image options it shares with batch jobs: spec, payload, result, entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workers import keys, media
from workers.contracts.base import Download, JobKind, Message, Payload, Queues, Result, SizeMode, task_id
from workers.keys import validate_key
from workers.media import ImageFormat, Media

if TYPE_CHECKING:
    from workers.jobstore import JobRecord
    from workers.settings import ServiceSettings

STYLIZE_TASK = "animegan.stylize"


class ImageSpec(BaseModel):
    """How a stylize or batch job produces its images. Job specs are the typed params of each kind: the API
    builds one from the validated form and stores its JSON in the job record; the workers parse it back into
    the same class (workers.jobs.job_spec). Extra fields are ignored so an API that adds an optional one does
    not break workers still running the old code."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1)
    format: ImageFormat = ImageFormat.png
    quality: int = Field(95, ge=1, le=100)  # JPEG/WebP quality
    size_mode: SizeMode = SizeMode.reference
    max_side: int | None = Field(None, ge=32, le=8192)
    faces: bool = True  # the portrait path (animegan.inference.faces); records written before it: on

    @property
    def media(self) -> Media:
        """Extension and content type of the outputs."""
        return media.by_format(self.format)


class StylizeSpec(ImageSpec):
    filename: str = "image"  # display name of the input; never a storage key
    width: int | None = None  # of the input, as the API read it
    height: int | None = None


class StylizePayload(Payload):
    input_key: str  # a file part the API stored, or a direct upload's own object; options: the StylizeSpec

    @field_validator("input_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return validate_key(value)


class StylizeResult(Result):
    output_key: str  # keys.output(job, 0, ext)
    width: int
    height: int
    content_type: str


def stylize_message(job_id: str, input_key: str) -> Message:
    """The one task of a stylize job."""
    return Message(
        STYLIZE_TASK, StylizePayload(job_id=job_id, input_key=input_key), task_id(job_id, "stylize")
    )


def image_ext(record: JobRecord) -> str:
    """Extension of the images a stylize or batch job writes (keys.output(job, index, ext)), from its spec."""
    return ImageSpec.model_validate(record.params).media.ext


def image_item(record: JobRecord, index: int) -> Download:
    """Output image `index` of a stylize (0) or batch job, named after the job."""
    ext = image_ext(record)
    return Download(keys.output(record.id, index, ext), f"{record.id}-{index:05d}.{ext}")


def _result_file(record: JobRecord) -> Download:
    ext = image_ext(record)
    key = (record.result or {}).get("output_key") or keys.output(record.id, 0, ext)
    return Download(key, f"{record.id}.{ext}")


def _queued(record: JobRecord, settings: ServiceSettings) -> list[str]:
    return [task_id(record.id, "stylize")]


STYLIZE = JobKind(
    name="stylize",
    queue=Queues.stylize,
    tasks=(STYLIZE_TASK,),
    spec=StylizeSpec,
    result=StylizeResult,
    task_module="workers.tasks.images",
    result_file=_result_file,
    item_file=image_item,
    queued_task_ids=_queued,
)
