"""POST /v1/stylize: one image (a multipart file or the id of a direct upload) -> a queued stylize job (202)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from workers.jobstore import JobKind, JobRecord, new_job_id

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


def check_model(services: Services, tenant: str, model: str) -> None:
    if services.registry.get(model, tenant) is None:
        raise ApiError(
            404, "model_not_found", f"model {model!r} does not exist; GET /v1/models lists the usable ones"
        )


def image_spec_fields(services: Services, tenant: str, options: StyleOptions) -> dict:
    """The ImageSpec fields of a stylize or batch form, after checking the model exists for this tenant."""
    check_model(services, tenant, options.model)
    return options.model_dump(include=set(contracts.ImageSpec.model_fields))


def read_upload_file(upload: UploadFile, limit: int) -> bytes:
    """The whole part (already spooled by the form parser), refusing (413) one above `limit` bytes."""
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        name = safe_name(upload.filename or "", "file")
        raise ApiError(413, "upload_too_large", f"{name} is larger than the {limit}-byte limit per file")
    return data


@dataclass(frozen=True)
class SourceFile:
    """A create's one input, read so the API can check it."""

    data: bytes
    name: str  # what errors and the job show for it
    upload_key: str | None  # a direct upload's object, which the job reads in place; None: a file part


def file_or_upload(
    services: Services,
    tenant: str,
    file: UploadFile | None,
    upload_id: str | None,
    purpose: UploadPurpose,
    limit: int,
    fallback_name: str,
) -> SourceFile:
    """The input sent as the `file` part or named by the `upload_id` of a direct upload of `purpose`."""
    if (file is None) == (upload_id is None):
        raise ApiError(422, "invalid_parameters", "file, upload_id: send exactly one of them")
    if file is not None:
        return SourceFile(read_upload_file(file, limit), safe_name(file.filename or "", fallback_name), None)
    key, _ = resolve_upload(services, tenant, upload_id, {purpose})
    return SourceFile(services.store.get_bytes(key), upload_id, key)


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
    source = file_or_upload(
        services, tenant, file, form.upload_id, UploadPurpose.image, settings.max_upload_bytes, "image"
    )
    info = inspect_image(source.data, source.name, settings.max_image_pixels)
    spec = contracts.StylizeSpec(
        **image_spec_fields(services, tenant, form),
        filename=source.name,
        width=info.width,
        height=info.height,
    )
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    digest = request_hash({"kind": "stylize", **form.model_dump(mode="json")}, [source.data])
    job_id = new_job_id()
    input_key = source.upload_key or keys.input(job_id, 0, info.ext)

    def write_inputs(_job_id: str) -> None:
        if source.upload_key is None:
            services.store.put_bytes(input_key, source.data, content_type=info.content_type)

    def enqueue(record: JobRecord) -> None:
        contracts.enqueue_stylize(record.id, input_key)

    record, created = submit_job(
        services,
        tenant,
        JobKind.STYLIZE,
        spec,
        1,
        digest,
        idem,
        webhook,
        write_inputs,
        enqueue,
        job_id=job_id,
    )
    logger.info("stylize job %s for %s (%s, %dx%d)", record.id, tenant, source.name, info.width, info.height)
    return accepted(response, request, job_public(services, request, record), created)
