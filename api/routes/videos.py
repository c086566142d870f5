"""POST /v1/videos: a clip (a multipart file or the id of a direct upload), probed and checked against the
limits before it is accepted (api.videos), then cut into keyframe-aligned segment tasks that any worker may run."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from api.deps import ServicesDep, Tenant
from api.job_options import JobOptionsDep, WaitingCreateRoute
from api.schemas import ErrorResponse, JobPublic, UploadPurpose, VideoForm
from api.submission import (
    CREATE_RESPONSES,
    IdempotencyKey,
    NewJob,
    Responses,
    accepted,
    check_idempotency_key,
    check_model,
    check_webhook_url,
    file_or_upload,
    request_hash,
    submit_job,
)
from api.videos import check_video
from workers import keys
from workers.contracts.video import VIDEO, VideoSpec, segment_messages
from workers.jobstore import new_job_id
from workers.media import OCTET_STREAM

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["videos"], route_class=WaitingCreateRoute)

VIDEO_RESPONSES: Responses = {
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
    options: JobOptionsDep,
    file: Annotated[UploadFile | None, File(description="the clip (MP4, MOV, MKV, WebM ...)")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    source = file_or_upload(
        services, tenant, file, form.upload_id, UploadPurpose.video, settings.max_video_bytes, "video"
    )
    video = check_video(source.data, source.name, settings)
    check_model(services, tenant, form.model)
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    job_id = new_job_id()
    info = video.info
    spec = VideoSpec(
        model=form.model,
        size_mode=form.size_mode,
        max_side=form.max_side,
        crf=form.crf,
        preset=form.preset.value,
        source_key=source.upload_key or keys.input(job_id, 0, video.ext),
        filename=source.name,
        time_base=video.time_base,
        frames=video.frames,
        width=info.width,
        height=info.height,
        fps=info.fps,
        duration=info.duration,
        audio_codec=info.audio_codec,
        segments=video.segments,
    )

    def write_inputs() -> None:
        if source.upload_key is None:
            services.store.put_bytes(spec.source_key, source.data, content_type=OCTET_STREAM)

    job = NewJob(
        kind=VIDEO,
        spec=spec,
        total=video.frames,
        digest=request_hash({"kind": "video", **form.model_dump(mode="json")}, [source.data]),
        write_inputs=write_inputs,
        messages=lambda job_id: segment_messages(job_id, len(video.segments)),
        job_id=job_id,
    )
    record, created = submit_job(services, tenant, job, idem, webhook, options.with_form(form))
    logger.info(
        "video job %s for %s (%s, %dx%d, %d frames, %d segments)",
        record.id, tenant, source.name, info.width, info.height, video.frames, len(video.segments),
    )  # fmt: skip
    return accepted(response, request, services, record, created)
