"""Jobs of the caller: list, get, cancel, results (redirect to a presigned URL on S3, the bytes on the local
backend), a job's files (a run's samples and checkpoints, a video's segments) and the server-sent event stream
of progress, all through the job's kind (workers.contracts.registry).
"""

from __future__ import annotations

import logging
from typing import Annotated

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from kombu.exceptions import KombuError
from pydantic import AfterValidator

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError, not_found
from api.events import job_event_stream
from api.schemas import ErrorResponse, JobFile, JobFileList, JobList, JobPublic
from api.submission import Responses
from api.views import api_url, estimate_args, job_public, kind_of, queue_estimate
from workers import enqueue, keys, media, queue_positions
from workers.contracts.base import Download, JobKind, job_prefixes
from workers.contracts.registry import KINDS
from workers.contracts.webhooks import webhook_message
from workers.exceptions import InvalidCursor
from workers.jobstore import RESULT_STATUSES, JobRecord, JobStatus
from workers.json_types import JSONObject
from workers.storage import NotFound

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND: Responses = {404: {"model": ErrorResponse, "description": "no such job for this API key"}}


def _known_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    return kind


# A kind name of the registry; checked here, not by an Enum, so a new kind is one registry line.
KindFilter = Annotated[
    str | None,
    Query(description="only jobs of this kind", json_schema_extra={"enum": list(KINDS)}),
    AfterValidator(_known_kind),
]


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
    kind: KindFilter = None,
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
    record = owned_job(services, tenant, job_id)
    return job_public(services, request, record, queue_estimate(services, record))


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
    kind = kind_of(record)
    queued = kind.queued_task_ids(record, services.settings) if kind is not None else []
    if record.status == JobStatus.QUEUED and queued:
        assert kind is not None  # queued is empty without one
        queue_positions.forget(services.redis, kind.queue.value, queued)
        try:
            enqueue.revoke(queued)
        except (KombuError, redis.RedisError, OSError) as exc:
            # Best effort: the cancel flag already stops any worker that picks the task up.
            logger.warning("could not revoke queued tasks of job %s: %s", job_id, exc)
    current = services.jobs.get(job_id) or record
    if current.status == JobStatus.CANCELED and current.webhook_url:
        # A queued job ends here, not in a worker: its terminal webhook is ours to send.
        try:
            enqueue.send(webhook_message(job_id, JobStatus.CANCELED.value))
        except (KombuError, redis.RedisError, OSError) as exc:
            logger.error("job %s: could not enqueue its webhook: %s", job_id, exc)
    return job_public(services, request, current)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "job_active: the job has not ended; cancel it first"},
    },
    summary="Delete an ended job: its record, its stored inputs and its outputs",
)
def delete_job(job_id: str, tenant: Tenant, services: ServicesDep) -> Response:
    """A queued or running job is refused (409), never cancelled as a side effect: POST .../cancel first, then
    DELETE once it has ended. Direct uploads it read stay (DELETE /v1/uploads/{id} removes those)."""
    record = owned_job(services, tenant, job_id)
    if not record.is_terminal:
        raise ApiError(
            409,
            "job_active",
            f"job {job_id} is {record.status.value}; cancel it first (POST /v1/jobs/{job_id}/cancel), then delete "
            "it once it has ended",
        )
    kind = kind_of(record)
    prefixes = kind.stored_prefixes(record) if kind is not None else job_prefixes(record)
    removed = sum(
        services.store.delete_prefix(prefix) for prefix in prefixes
    )  # storage first: a retry finds it
    if services.jobs.delete(job_id, tenant) == 0:  # ended jobs never become active again; defensive
        raise ApiError(409, "job_active", f"job {job_id} has not ended; cancel it first")
    logger.info("job %s of %s deleted (%d stored objects)", job_id, tenant, removed)
    return Response(status_code=204)


def _deliver(services: Services, file: Download) -> Response:
    """A 307 to a presigned URL (S3) or the object's bytes (local backend)."""
    key, filename = file.key, file.filename
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


def _kind(record: JobRecord) -> JobKind:
    kind = kind_of(record)
    if kind is None:
        raise ApiError(
            409,
            "unknown_kind",
            f"job {record.id} is of kind {record.kind!r}, which this API replica does not serve",
        )
    return kind


def _require_succeeded(record: JobRecord) -> None:
    if record.status in RESULT_STATUSES:  # a partial batch's archive holds the images done and errors.json
        return
    if record.error:
        detail = f"{record.status.value}: {record.error.get('code')}: {record.error.get('message')}"
    else:
        detail = f"is {record.status.value}"
    raise ApiError(
        409,
        "result_not_ready",
        f"job {record.id} {detail}; a result exists only once it succeeded (or a batch ended partial)",
    )


# Routes that hand out a stored file: a 307 to a presigned URL (S3) or the bytes (local backend).
FILE_RESPONSES: Responses = {
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
    kind = _kind(record)
    if kind.result_file is None:
        raise ApiError(409, "no_result_file", kind.no_result_file.format(id=job_id))
    _require_succeeded(record)
    return _deliver(services, kind.result_file(record))


@router.get(
    "/{job_id}/results/{index}",
    responses=FILE_RESPONSES,
    response_class=Response,
    summary="One image of a batch, as soon as it is done",
)
def get_item_result(job_id: str, index: int, tenant: Tenant, services: ServicesDep) -> Response:
    record = owned_job(services, tenant, job_id)
    total = int(record.progress.get("total", 0))
    kind = _kind(record)
    if kind.item_file is None or not 0 <= index < max(total, 1):
        raise ApiError(404, "result_not_found", f"job {job_id} has no image {index} (images 0..{total - 1})")
    file = kind.item_file(record, index)
    if not services.store.exists(file.key):
        errors = services.jobs.item_errors(job_id)
        if index in errors:
            err = errors[index]
            raise ApiError(
                409, "item_failed", f"image {index} failed: {err.get('code')}: {err.get('message')}"
            )
        raise ApiError(
            409, "result_not_ready", f"image {index} of job {job_id} is not done yet ({record.status})"
        )
    return _deliver(services, file)


@router.get(
    "/{job_id}/files", response_model=JobFileList, responses=NOT_FOUND, summary="Samples and checkpoints"
)
def list_files(job_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> JobFileList:
    record = owned_job(services, tenant, job_id)
    items = []
    for kind, prefix_of in _kind(record).files.items():
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
    folders = _kind(owned_job(services, tenant, job_id)).files
    if kind not in folders or not keys.SEGMENT_RE.match(name):
        raise not_found("file", f"{kind}/{name}")
    key = folders[kind](job_id) + name
    if not services.store.exists(key):
        raise not_found("file", f"{kind}/{name}")
    return _deliver(services, Download(key, name))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}}}},
    summary="Server-sent events: the current state, then progress, until the job ends",
)
def job_events(job_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> StreamingResponse:
    owned_job(services, tenant, job_id)

    async def estimate(job_id: str) -> JSONObject | None:
        record = await services.job_events.get(job_id)
        args = estimate_args(services, record) if record is not None else None
        if args is None:
            return None
        queue, model, own, keys, argv = args
        raw = await services.job_events.redis.eval(queue_positions.ESTIMATE, len(keys), *keys, *argv)
        return queue_positions.build_estimate(queue, model, own, list(raw), float(argv[1])).to_dict()

    stream = job_event_stream(
        services.job_events,
        job_id,
        request,
        lambda record: job_public(services, request, record).model_dump(mode="json"),
        services.settings.sse_keepalive_seconds,
        estimate,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
