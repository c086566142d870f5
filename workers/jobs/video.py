"""Video jobs: one task per keyframe-aligned segment (any worker may run each), then one join task that
concatenates the segments without re-encoding and adds the source's audio.

Segments land at deterministic keys (keys.video_segment), so a redelivered segment overwrites its own output;
a segment is counted once (a Redis set), and progress is the sum of frames stylized per segment.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from animegan.errors import AnimeGANError, VideoError
from animegan.video import EncodeOptions, Segment, StopVideo, join_segments, probe_video, stylize_video
from workers import keys
from workers.contracts.video import MP4, VideoResult, VideoSpec
from workers.jobs import JobCanceled, JobContext, JobInputError, begin, check_cancel, job_spec, succeed
from workers.jobs.stylize import inference_options
from workers.storage import NotFound

if TYPE_CHECKING:
    from animegan.inference import Stylizer

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 1.0  # at most one progress event per segment and second


def worker_name() -> str:
    """Which process ran a segment (host:pid), shown in the job's progress.segments."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _download_source(ctx: JobContext, spec: VideoSpec, folder: Path) -> Path:
    path = folder / "source"
    key = spec.source_key
    try:
        ctx.store.get_file(key, path)
    except NotFound as exc:
        raise JobInputError(
            "input_missing", f"input {key!r} is not in storage (expired or never uploaded)"
        ) from exc
    return path


def _record_frames(ctx: JobContext, job_id: str, segment: int, frames: int, **fields: int) -> None:
    """Frames stylized so far in `segment`; the job's done count is the sum over its segments."""
    done = ctx.jobs.record_segment_frames(job_id, segment, frames)
    ctx.jobs.set_progress(job_id, done=done, **fields)


def run_video_segment(ctx: JobContext, job_id: str, segment: int, redelivered: bool = False) -> bool:
    """Stylize one segment into keys.video_segment; True when every segment of the job is written (the caller
    then enqueues the join). A segment already counted is not redone."""
    record = begin(ctx, job_id, redelivered, f"segment:{segment}")
    if record is None:
        return False
    params = job_spec(record, VideoSpec)
    if segment >= len(params.segments):
        raise JobInputError(
            "bad_params", f"segment {segment} of a video with {len(params.segments)} segments"
        )
    if segment in ctx.jobs.segments_written(job_id):
        logger.info("job %s: segment %d already written", job_id, segment)
        return len(ctx.jobs.segments_written(job_id)) == len(params.segments)
    options = inference_options(ctx, params, keep_alpha=False, faces=False)  # no per-frame face pass
    try:
        encode = EncodeOptions(crf=params.crf, preset=params.preset)
    except (AnimeGANError, ValueError) as exc:
        raise JobInputError("bad_params", f"video options are invalid: {exc}") from exc
    stylizer = ctx.models.stylizer(ctx.models.get(params.model, record.owner), options)
    started = time.time()
    frames = _encode_segment(ctx, job_id, params, segment, stylizer, encode)
    if ctx.jobs.mark_segment_written(job_id, segment):
        ctx.jobs.append_progress(
            job_id,
            "segments",
            {
                "segment": segment,
                "frames": frames,
                "worker": worker_name(),
                "seconds": round(time.time() - started, 3),
            },
        )
    written = ctx.jobs.segments_written(job_id)
    _record_frames(ctx, job_id, segment, frames, segments_done=len(written))
    logger.info("job %s: segment %d written (%d frames)", job_id, segment, frames)
    return len(written) == len(params.segments)


def _encode_segment(
    ctx: JobContext, job_id: str, params: VideoSpec, segment: int, stylizer: Stylizer, encode: EncodeOptions
) -> int:
    """Stylize segment `segment` of the source into keys.video_segment; the frames it holds."""
    last = [0.0]

    def progress(frames: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            _record_frames(ctx, job_id, segment, frames)

    with tempfile.TemporaryDirectory(prefix="animegan-video-") as tmp:
        source = _download_source(ctx, params, Path(tmp))
        out = Path(tmp) / "segment.mp4"
        try:
            result = stylize_video(
                source,
                out,
                stylizer,
                encode=encode,
                segment=Segment.from_dict(params.segments[segment].model_dump()),
                audio=False,
                progress=progress,
                should_stop=lambda: ctx.jobs.is_cancel_requested(job_id),
            )
        except StopVideo as exc:
            raise JobCanceled(job_id) from exc
        except VideoError as exc:
            raise JobInputError("bad_video", f"segment {segment}: {exc}") from exc
        # Written before it is counted (and before the task is acknowledged): a redelivery overwrites it.
        ctx.store.put_file(keys.video_segment(job_id, segment), out, content_type=MP4.content_type)
    return result.frames


def run_join(ctx: JobContext, job_id: str) -> None:
    """Concatenate the segments into keys.output(job, 0, "mp4") with the source's audio; succeed the job."""
    record = ctx.jobs.get(job_id)
    if record is None or record.status != "running":
        logger.info("job %s: nothing to join (%s)", job_id, None if record is None else record.status)
        return
    params = job_spec(record, VideoSpec)
    count = len(params.segments)
    written = ctx.jobs.segments_written(job_id)
    if len(written) < count:
        logger.info("job %s: %d of %d segments written; the last one joins", job_id, len(written), count)
        return
    check_cancel(ctx, job_id)
    segments = [Segment.from_dict(s.model_dump()) for s in params.segments]
    with tempfile.TemporaryDirectory(prefix="animegan-join-") as tmp:
        folder = Path(tmp)
        parts = []
        for seg in segments:
            part = folder / f"{seg.index:06d}.mp4"
            try:
                ctx.store.get_file(keys.video_segment(job_id, seg.index), part)
            except NotFound as exc:
                raise JobInputError("segment_missing", f"segment {seg.index} is not in storage") from exc
            parts.append(part)
        source = _download_source(ctx, params, folder) if params.audio_codec else None
        out = folder / "result.mp4"
        try:
            join_segments(parts, segments, out, Fraction(params.time_base), source=source)
            info = probe_video(out)
        except VideoError as exc:
            raise JobInputError("bad_video", f"joining the segments failed: {exc}") from exc
        key = keys.output(job_id, 0, MP4.ext)
        ctx.store.put_file(key, out, content_type=MP4.content_type)
    ctx.jobs.set_progress(job_id, done=info.frames)
    succeed(
        ctx,
        job_id,
        VideoResult(
            output_key=key,
            content_type=MP4.content_type,
            width=info.width,
            height=info.height,
            frames=info.frames,
            fps=info.fps,
            duration=info.duration,
            audio=info.audio_codec is not None,
            segments=count,
        ),
    )
