"""POST /v1/stylize: one image (a multipart file or the id of a direct upload) -> a queued stylize job (202)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError
from api.images import inspect_image, safe_name
from api.routes.jobs import job_public
from api.routes.uploads import resolve_upload
from api.schemas import ErrorResponse, JobPublic, StyleOptions, StylizeForm, UploadPurpose
from api.submission import IdempotencyKey, check_idempotency_key, check_webhook_url, request_hash, submit_job
from workers import contracts, keys
from workers.jobstore import JobKind, JobRecord

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["stylize"])

CREATE_RESPONSES = {
    404: {"model": ErrorResponse, "description": "unknown model or upload id"},
    409: {"model": ErrorResponse, "description": "Idempotency-Key reused with a different body"},
    413: {
        "model": ErrorResponse,
        "description": "a file above its limit, the whole request above ANIMEGAN_MAX_REQUEST_BYTES, or a "
        "direct upload that holds more than its declared size (upload_size_mismatch)",
    },
    415: {"model": ErrorResponse, "description": "not an image, an unsupported format, a truncated image"},
    422: {
        "model": ErrorResponse,
        "description": "bad parameter (max_side is required with size_mode=max_side and refused otherwise; "
        "file and upload_id exclude each other), an Idempotency-Key that is empty or not printable, too many "
        "pixels, a decompression bomb, a damaged archive, a direct upload smaller than declared "
        "(upload_size_mismatch)",
    },
    429: {"model": ErrorResponse, "description": "rate limit or concurrent-job limit; see Retry-After"},
}


def style_params(services: Services, tenant: str, options: StyleOptions) -> dict:
    """The job params both stylize and batch jobs store, after checking the model exists for this tenant."""
    if services.registry.get(options.model, tenant) is None:
        raise ApiError(
            404,
            "model_not_found",
            f"model {options.model!r} does not exist; GET /v1/models lists the usable ones",
        )
    return {
        "model": options.model,
        "format": options.format.value,
        "quality": options.quality,
        "size_mode": options.size_mode.value,
        "max_side": options.max_side,
    }


def read_upload_file(upload: UploadFile, limit: int) -> bytes:
    """The whole part (already spooled by the form parser), refusing (413) one above `limit` bytes."""
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        name = safe_name(upload.filename or "", "file")
        raise ApiError(413, "upload_too_large", f"{name} is larger than the {limit}-byte limit per file")
    return data


def file_or_upload(
    services: Services,
    tenant: str,
    file: UploadFile | None,
    upload_id: str | None,
    purpose: UploadPurpose,
    limit: int,
    fallback_name: str,
) -> tuple[bytes, str]:
    """The bytes of a create's one input, sent as the `file` part or named by the `upload_id` of a direct
    upload of `purpose`, and the name errors show for it."""
    if (file is None) == (upload_id is None):
        raise ApiError(422, "invalid_parameters", "file, upload_id: send exactly one of them")
    if file is not None:
        return read_upload_file(file, limit), safe_name(file.filename or "", fallback_name)
    source, _ = resolve_upload(services, tenant, upload_id, {purpose})
    return services.store.get_bytes(source), upload_id


def accepted(response: Response, request: Request, record_public: JobPublic, created: bool) -> JobPublic:
    """202 with Location for a new job; 200 for an idempotent replay of an existing one."""
    response.status_code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    response.headers["Location"] = record_public.links.self
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return record_public


@router.post(
    "/stylize",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=CREATE_RESPONSES,
    summary="Stylize one image",
    description="Send the image as the `file` part, or the `upload_id` of a finished direct upload. Returns the "
    "queued job (202) with its URL in Location; poll it, stream its events, then GET its result.",
)
def create_stylize(
    request: Request,
    response: Response,
    form: Annotated[StylizeForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="the image (JPEG, PNG, WebP, BMP)")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    data, name = file_or_upload(
        services, tenant, file, form.upload_id, UploadPurpose.image, settings.max_upload_bytes, "image"
    )
    info = inspect_image(data, name, settings.max_image_pixels)
    params = style_params(services, tenant, form)
    params.update(filename=name, width=info.width, height=info.height)
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    digest = request_hash({"kind": "stylize", **form.model_dump(mode="json")}, [data])

    def write_inputs(job_id: str) -> None:
        services.store.put_bytes(keys.input(job_id, 0, info.ext), data, content_type=info.content_type)

    def enqueue(record: JobRecord) -> None:
        contracts.enqueue_stylize(record.id, keys.input(record.id, 0, info.ext))

    record, created = submit_job(
        services, tenant, JobKind.STYLIZE, params, 1, digest, idem, webhook, write_inputs, enqueue
    )
    logger.info("stylize job %s for %s (%s, %dx%d)", record.id, tenant, name, info.width, info.height)
    return accepted(response, request, job_public(services, request, record), created)
