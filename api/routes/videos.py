"""POST /v1/videos: a clip (a multipart file or the id of a direct upload), probed and checked against the
limits before it is accepted, then cut into keyframe-aligned segment tasks that any worker may run."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from animegan.errors import VideoError
from animegan.video import VideoInfo, plan_segments, probe_video
from api.deps import ServicesDep, Tenant
from api.errors import ApiError
from api.routes.jobs import job_public
from api.routes.stylize import CREATE_RESPONSES, accepted, check_model, file_or_upload
from api.schemas import ErrorResponse, JobPublic, UploadPurpose, VideoForm
from api.settings import ApiSettings
from api.submission import IdempotencyKey, check_idempotency_key, check_webhook_url, request_hash, submit_job
from workers import contracts, keys
from workers.jobstore import JobKind, JobRecord, new_job_id
from workers.media import OCTET_STREAM

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["videos"])

# The stored clip's extension, by FFmpeg's container name (first of its aliases); others are stored as .video.
CONTAINER_EXT = {"mov": "mp4", "matroska": "mkv", "avi": "avi", "mpegts": "ts", "flv": "flv", "ogg": "ogv"}

VIDEO_RESPONSES = {
    **CREATE_RESPONSES,
    413: {"model": ErrorResponse, "description": "a clip larger than ANIMEGAN_MAX_VIDEO_BYTES"},
    415: {
        "model": ErrorResponse,
        "description": "not a video container, no video stream (an audio-only file), a truncated or damaged file",
    },
    422: {
        "model": ErrorResponse,
        "description": "bad parameter, or a clip above ANIMEGAN_MAX_VIDEO_SECONDS, ANIMEGAN_MAX_VIDEO_PIXELS "
        "(per frame) or ANIMEGAN_MAX_VIDEO_FPS",
    },
}


def check_video(data: bytes, name: str, settings: ApiSettings) -> VideoInfo:
    """Probe the clip; 415 for what is not a playable video, 422 for one above the limits."""
    try:
        info = probe_video(data)
    except VideoError as exc:
        raise ApiError(415, "not_a_video", f"{name}: {exc}") from exc
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
    return info


@router.post(
    "/videos",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=VIDEO_RESPONSES,
    summary="Stylize a video clip",
    description="Send the clip as the `file` part, or the `upload_id` of a direct upload (purpose `video`). It is "
    "probed (duration, frame size, frame rate, streams) and refused if it is not a video or passes the limits; "
    "the job's progress counts frames; its result is an H.264 MP4 with the source's audio.",
)
def create_video(
    request: Request,
    response: Response,
    form: Annotated[VideoForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="the clip (MP4, MOV, MKV, WebM ...)")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    source = file_or_upload(
        services, tenant, file, form.upload_id, UploadPurpose.video, settings.max_video_bytes, "video"
    )
    info = check_video(source.data, source.name, settings)
    check_model(services, tenant, form.model)
    segments = plan_segments(info, settings.video_segment_seconds)
    ext = CONTAINER_EXT.get(info.format.split(",")[0], "video")
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    digest = request_hash({"kind": "video", **form.model_dump(mode="json")}, [source.data])
    frames = sum(s.frames for s in segments)
    job_id = new_job_id()

    spec = contracts.VideoSpec(
        model=form.model,
        size_mode=form.size_mode,
        max_side=form.max_side,
        crf=form.crf,
        preset=form.preset.value,
        source_key=source.upload_key or keys.input(job_id, 0, ext),
        filename=source.name,
        time_base=f"{info.time_base.numerator}/{info.time_base.denominator}",
        frames=frames,
        width=info.width,
        height=info.height,
        fps=info.fps,
        duration=info.duration,
        audio_codec=info.audio_codec,
        segments=[contracts.VideoSegmentSpec(**s.to_dict()) for s in segments],
    )

    def write_inputs(_job_id: str) -> None:
        if source.upload_key is None:
            services.store.put_bytes(spec.source_key, source.data, content_type=OCTET_STREAM)

    def enqueue(record: JobRecord) -> None:
        contracts.enqueue_video(record.id, len(segments))

    record, created = submit_job(
        services, tenant, JobKind.VIDEO, spec, frames, digest, idem, webhook, write_inputs, enqueue,
        job_id=job_id,
    )  # fmt: skip
    logger.info(
        "video job %s for %s (%s, %dx%d, %d frames, %d segments)",
        record.id, tenant, source.name, info.width, info.height, frames, len(segments),
    )  # fmt: skip
    return accepted(response, request, job_public(services, request, record), created)
