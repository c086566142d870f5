"""Checks of uploaded video clips before a job is accepted: probed with PyAV (animegan.video, no torch), held
to the frame-size, length and frame-rate limits, and planned into keyframe-aligned segments for the job spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from animegan.errors import VideoError
from animegan.video import VideoInfo, plan_segments, probe_video
from api.errors import ApiError
from api.settings import ApiSettings
from workers.contracts.video import VideoSegmentSpec
from workers.media import CONTAINER_EXT, UNKNOWN_CONTAINER_EXT

# Containers FFmpeg opens that hold still images (single or animated), besides its *_pipe image readers.
IMAGE_CONTAINERS = frozenset({"image2", "gif", "apng", "webp"})


@dataclass(frozen=True)
class CheckedVideo:
    """What the API learned from a clip: its facts, the segments its job runs as, the stored file's extension."""

    info: VideoInfo
    segments: list[VideoSegmentSpec]
    ext: str

    @property
    def frames(self) -> int:
        return sum(segment.frames for segment in self.segments)

    @property
    def time_base(self) -> str:
        """The video stream's time base as "num/den" (VideoSpec.time_base)."""
        return f"{self.info.time_base.numerator}/{self.info.time_base.denominator}"


def check_video(data: bytes, name: str, settings: ApiSettings) -> CheckedVideo:
    """Probe the clip; 415 for what is not a playable video, 422 for one above the limits."""
    try:
        info = probe_video(data)
    except VideoError as exc:
        raise ApiError(415, "not_a_video", f"{name}: {exc}") from exc
    container = info.format.split(",")[0]
    if container.endswith("_pipe") or container in IMAGE_CONTAINERS:
        # FFmpeg reads a still image as a one-frame "video" (jpeg_pipe, png_pipe, ...): not what /v1/videos is for.
        raise ApiError(
            415,
            "not_a_video",
            f"{name}: this is a still image ({container.removesuffix('_pipe')}), not a video clip; send images to "
            "/v1/stylize or /v1/batches",
        )
    limits = [
        (
            "video_too_long",
            info.duration,
            settings.max_video_seconds,
            "seconds",
            "ANIMEGAN_MAX_VIDEO_SECONDS",
        ),
        (
            "too_many_pixels",
            info.width * info.height,
            settings.max_video_pixels,
            f"pixels per frame ({info.width}x{info.height})",
            "ANIMEGAN_MAX_VIDEO_PIXELS",
        ),
        (
            "frame_rate_too_high",
            info.fps,
            settings.max_video_fps,
            "frames per second",
            "ANIMEGAN_MAX_VIDEO_FPS",
        ),
    ]
    for code, value, limit, unit, setting in limits:
        if value > limit:
            raise ApiError(
                422, code, f"{name}: {value:.6g} {unit} is above the limit of {limit:g} ({setting})"
            )
    segments = [
        VideoSegmentSpec(**segment.to_dict())
        for segment in plan_segments(info, settings.video_segment_seconds)
    ]
    ext = CONTAINER_EXT.get(info.format.split(",")[0], UNKNOWN_CONTAINER_EXT)
    return CheckedVideo(info, segments, ext)
