"""The video kind: a clip cut into keyframe-aligned segment tasks that any worker may run, then one join task
that concatenates them and adds the source's audio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workers import keys, media
from workers.contracts.base import Download, JobKind, Message, Payload, Queues, Result, SizeMode, task_id
from workers.keys import validate_key

if TYPE_CHECKING:
    from workers.jobstore import JobRecord
    from workers.settings import ServiceSettings

SEGMENT_TASK = "animegan.video_segment"
JOIN_TASK = "animegan.join_video"
MP4 = media.by_format("mp4")


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


class VideoSegmentPayload(Payload):
    segment: int = Field(ge=0)  # index into VideoSpec.segments


class JoinVideoPayload(Payload):
    """Concatenate a video job's segments and add the source's audio, once every segment is written."""


class VideoResult(Result):
    output_key: str  # keys.output(job, 0, "mp4")
    content_type: str
    width: int
    height: int
    frames: int
    fps: float
    duration: float
    audio: bool  # whether the result carries the source's audio
    segments: int


def segment_messages(job_id: str, segment_count: int) -> list[Message]:
    """One task per segment; the worker that writes the last one enqueues the join."""
    if segment_count < 1:
        raise ValueError(f"video {job_id}: need at least one segment, got {segment_count}")
    return [
        Message(
            SEGMENT_TASK, VideoSegmentPayload(job_id=job_id, segment=n), task_id(job_id, "video-segment", n)
        )
        for n in range(segment_count)
    ]


def join_message(job_id: str) -> Message:
    return Message(JOIN_TASK, JoinVideoPayload(job_id=job_id), task_id(job_id, "video-join"))


def _result_file(record: JobRecord) -> Download:
    key = (record.result or {}).get("output_key") or keys.output(record.id, 0, MP4.ext)
    return Download(key, f"{record.id}.{MP4.ext}")


def _queued(record: JobRecord, settings: ServiceSettings) -> list[str]:
    segments = len(record.params.get("segments") or [])
    return [task_id(record.id, "video-segment", n) for n in range(segments)]


VIDEO = JobKind(
    name="video",
    queue=Queues.stylize,
    tasks=(SEGMENT_TASK, JOIN_TASK),
    spec=VideoSpec,
    result=VideoResult,
    task_module="workers.tasks.video",
    result_file=_result_file,
    files={"segments": keys.video_segments_prefix},  # the stylized segments, before the join
    queued_task_ids=_queued,
)
