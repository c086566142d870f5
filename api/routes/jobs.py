"""Jobs of the caller: list, get, cancel, results (redirect to a presigned URL on S3, the bytes on the local
backend), training files (samples, checkpoints) and the server-sent event stream of progress.
"""

from __future__ import annotations

import logging
from typing import Annotated

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from kombu.exceptions import KombuError

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError, not_found
from api.events import job_event_stream
from api.schemas import ErrorResponse, JobFile, JobFileList, JobLinks, JobList, JobPublic
from workers import contracts, keys, media
from workers.exceptions import InvalidCursor
from workers.jobstore import JobKind, JobRecord, JobStatus
from workers.storage import NotFound

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

FILE_KINDS = {
    "samples": keys.samples_prefix,
    "checkpoints": keys.checkpoints_prefix,
    "segments": keys.video_segments_prefix,  # a video job's stylized segments, before the join
}
NOT_FOUND = {404: {"model": ErrorResponse, "description": "no such job for this API key"}}


def api_url(services: Services, request: Request, path: str) -> str:
    base = services.settings.public_base_url or str(request.base_url).rstrip("/")
    return f"{base}{path}"


def job_public(services: Services, request: Request, record: JobRecord) -> JobPublic:
    path = f"/v1/jobs/{record.id}"
    links = JobLinks(
        self=api_url(services, request, path),
        events=api_url(services, request, f"{path}/events"),
        cancel=api_url(services, request, f"{path}/cancel"),
        result=api_url(services, request, f"{path}/result") if record.kind != JobKind.TRAIN else None,
        files=api_url(services, request, f"{path}/files")
        if record.kind in (JobKind.TRAIN, JobKind.VIDEO)
        else None,
    )
    return JobPublic(
        id=record.id,
        kind=record.kind.value,
        status=record.status.value,
        params=record.params,
        progress=record.progress,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        attempts=record.attempts,
        error=record.error,
        result=record.result,
        webhook_url=record.webhook_url,
        links=links,
    )


def owned_job(services: Services, tenant: str, job_id: str) -> JobRecord:
    """The job if it exists and belongs to `tenant`; otherwise the same 404 either way."""
    record = services.jobs.get(job_id) if keys.SEGMENT_RE.match(job_id) else None
    if record is None or record.owner != tenant:
        raise not_found("job", job_id)
    return record


@router.get(
    "",
    response_model=JobList,
    responses={
        422: {
            "model": ErrorResponse,
            "description": "invalid_cursor: a cursor that is not a next_cursor of this listing; "
            "invalid_parameters: a bad kind, status or limit",
        }
    },
    summary="List your jobs, newest first",
)
def list_jobs(
    request: Request,
    tenant: Tenant,
    services: ServicesDep,
    kind: Annotated[JobKind | None, Query(description="only jobs of this kind")] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
) -> JobList:
    limit = min(limit, services.settings.max_page_size)
    try:
        records, next_cursor = services.jobs.list(
            tenant, kind=kind, status=status, limit=limit, cursor=cursor
        )
    except InvalidCursor as exc:
        raise ApiError(422, "invalid_cursor", f"cursor: {exc}") from exc
    return JobList(items=[job_public(services, request, r) for r in records], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND, summary="One job with its progress")
def get_job(job_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> JobPublic:
    return job_public(services, request, owned_job(services, tenant, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={**NOT_FOUND, 409: {"model": ErrorResponse, "description": "the job already ended"}},
    summary="Cancel a job: a queued one at once, a running one at its next image or training step",
)
def cancel_job(job_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> JobPublic:
    record = owned_job(services, tenant, job_id)
    if not services.jobs.cancel(job_id):
        current = services.jobs.get(job_id) or record
        raise ApiError(409, "job_finished", f"job {job_id} already ended with status {current.status.value}")
    logger.info("cancel requested for job %s by %s", job_id, tenant)
    if record.status == JobStatus.QUEUED and record.kind != JobKind.TRAIN:
        chunks = -(-int(record.progress.get("total", 0)) // services.settings.batch_chunk_size)
        try:
            contracts.revoke_queued(
                job_id,
                chunks if record.kind == JobKind.BATCH else 0,
                video_segments=len(record.params.get("segments") or []),
            )
        except (KombuError, redis.RedisError, OSError) as exc:
            # Best effort: the cancel flag already stops any worker that picks the task up.
            logger.warning("could not revoke queued tasks of job %s: %s", job_id, exc)
    current = services.jobs.get(job_id) or record
    if current.status == JobStatus.CANCELED and current.webhook_url:
        # A queued job ends here, not in a worker: its terminal webhook is ours to send.
        try:
            contracts.enqueue_webhook(job_id, JobStatus.CANCELED.value)
        except (KombuError, redis.RedisError, OSError) as exc:
            logger.error("job %s: could not enqueue its webhook: %s", job_id, exc)
    return job_public(services, request, current)


def _deliver(services: Services, key: str, filename: str) -> Response:
    """A 307 to a presigned URL (S3) or the object's bytes (local backend)."""
    expires = services.settings.presign_expiry_seconds
    url = services.store.presign_get(key, expires, filename=filename)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    try:
        data = services.store.get_bytes(key)
    except NotFound as exc:
        raise ApiError(404, "result_not_found", f"result object {filename} is missing from storage") from exc
    return Response(
        data,
        media_type=media.content_type_of(key),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def image_ext(record: JobRecord) -> str:
    """Extension of the images a stylize or batch job writes (keys.output(job, index, ext)), from its spec."""
    return contracts.ImageSpec.model_validate(record.params).media.ext


def _require_succeeded(record: JobRecord) -> None:
    if record.status == JobStatus.SUCCEEDED:
        return
    if record.status == JobStatus.FAILED and record.error:
        detail = f"failed: {record.error.get('code')}: {record.error.get('message')}"
    else:
        detail = f"is {record.status.value}"
    raise ApiError(
        409, "result_not_ready", f"job {record.id} {detail}; a result exists only once it succeeded"
    )


# Routes that hand out a stored file: a 307 to a presigned URL (S3) or the bytes (local backend).
FILE_RESPONSES = {
    **NOT_FOUND,
    307: {"description": "redirect to a presigned URL"},
    409: {"model": ErrorResponse},
}


@router.get(
    "/{job_id}/result",
    responses=FILE_RESPONSES,
    response_class=Response,
    summary="The result: the image of a stylize job, the zip of a batch",
)
def get_result(job_id: str, tenant: Tenant, services: ServicesDep) -> Response:
    record = owned_job(services, tenant, job_id)
    if record.kind == JobKind.TRAIN:
        raise ApiError(
            409,
            "no_result_file",
            f"job {job_id} is a training run: its result is the model named in its result",
        )
    _require_succeeded(record)
    result = record.result or {}
    if record.kind == JobKind.BATCH:
        return _deliver(services, result.get("archive_key") or keys.output_archive(job_id), f"{job_id}.zip")
    if record.kind == JobKind.VIDEO:
        mp4 = media.by_format("mp4").ext
        return _deliver(services, result.get("output_key") or keys.output(job_id, 0, mp4), f"{job_id}.{mp4}")
    ext = image_ext(record)
    return _deliver(services, result.get("output_key") or keys.output(job_id, 0, ext), f"{job_id}.{ext}")


@router.get(
    "/{job_id}/results/{index}",
    responses=FILE_RESPONSES,
    response_class=Response,
    summary="One image of a batch, as soon as it is done",
)
def get_item_result(job_id: str, index: int, tenant: Tenant, services: ServicesDep) -> Response:
    record = owned_job(services, tenant, job_id)
    total = int(record.progress.get("total", 0))
    if record.kind == JobKind.TRAIN or not 0 <= index < max(total, 1):
        raise ApiError(404, "result_not_found", f"job {job_id} has no image {index} (images 0..{total - 1})")
    ext = image_ext(record)
    key = keys.output(job_id, index, ext)
    if not services.store.exists(key):
        errors = services.jobs.item_errors(job_id)
        if index in errors:
            err = errors[index]
            raise ApiError(
                409, "item_failed", f"image {index} failed: {err.get('code')}: {err.get('message')}"
            )
        raise ApiError(
            409, "result_not_ready", f"image {index} of job {job_id} is not done yet ({record.status})"
        )
    return _deliver(services, key, f"{job_id}-{index:05d}.{ext}")


@router.get(
    "/{job_id}/files", response_model=JobFileList, responses=NOT_FOUND, summary="Samples and checkpoints"
)
def list_files(job_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> JobFileList:
    owned_job(services, tenant, job_id)
    items = []
    for kind, prefix_of in FILE_KINDS.items():
        prefix = prefix_of(job_id)
        for key in services.store.list(prefix):
            name = key[len(prefix) :]
            url = api_url(services, request, f"/v1/jobs/{job_id}/files/{kind}/{name}")
            items.append(JobFile(name=f"{kind}/{name}", kind=kind.rstrip("s"), url=url))
    return JobFileList(items=items)


@router.get(
    "/{job_id}/files/{kind}/{name}",
    response_class=Response,
    responses=NOT_FOUND,
    summary="One sample/checkpoint",
)
def get_file(job_id: str, kind: str, name: str, tenant: Tenant, services: ServicesDep) -> Response:
    owned_job(services, tenant, job_id)
    if kind not in FILE_KINDS or not keys.SEGMENT_RE.match(name):
        raise not_found("file", f"{kind}/{name}")
    key = FILE_KINDS[kind](job_id) + name
    if not services.store.exists(key):
        raise not_found("file", f"{kind}/{name}")
    return _deliver(services, key, name)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}}}},
    summary="Server-sent events: the current state, then progress, until the job ends",
)
def job_events(job_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> StreamingResponse:
    owned_job(services, tenant, job_id)
    stream = job_event_stream(
        services.jobs,
        job_id,
        request,
        lambda record: job_public(services, request, record).model_dump(mode="json"),
        services.settings.sse_keepalive_seconds,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
