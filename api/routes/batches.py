"""POST /v1/batches: many images with one model (several files, a zip, or direct-upload ids) -> one batch job
that the contracts fan out into chunk tasks of `batch_chunk_size` images each.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError
from api.images import ImageInfo, inspect_image, read_image_archive, safe_name
from api.routes.jobs import job_public
from api.routes.stylize import CREATE_RESPONSES, accepted, read_upload_file, style_params
from api.routes.uploads import resolve_upload
from api.schemas import BatchForm, JobPublic, UploadPurpose
from api.submission import IdempotencyKey, check_idempotency_key, check_webhook_url, request_hash, submit_job
from workers import contracts, keys
from workers.jobstore import JobKind, JobRecord

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["batches"])

Item = tuple[str, bytes, ImageInfo]  # display name, bytes, header facts


def _is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _collect(
    services: Services,
    tenant: str,
    files: list[UploadFile],
    archive: UploadFile | None,
    upload_ids: list[str],
) -> list[Item]:
    """Every image of the request, in order: files, then the archive's images, then the uploads'."""
    s = services.settings
    items: list[Item] = []

    def add_archive(data: bytes, name: str) -> None:
        room = s.max_batch_items - len(items)
        items.extend(read_image_archive(data, name, max(room, 0), s.max_archive_bytes, s.max_image_pixels))

    for i, upload in enumerate(files):
        name = safe_name(upload.filename or "", f"image-{i}")
        data = read_upload_file(upload, s.max_upload_bytes)
        items.append((name, data, inspect_image(data, name, s.max_image_pixels)))
    if archive is not None:
        add_archive(
            read_upload_file(archive, s.max_request_bytes), safe_name(archive.filename or "", "archive")
        )
    for upload_id in upload_ids:
        key, _ = resolve_upload(services, tenant, upload_id, {UploadPurpose.image, UploadPurpose.archive})
        data = services.store.get_bytes(key)
        if _is_zip(data):
            add_archive(data, upload_id)
        else:
            items.append((upload_id, data, inspect_image(data, upload_id, s.max_image_pixels)))
    if not items:
        raise ApiError(422, "invalid_parameters", "files, archive, upload_ids: send at least one image")
    if len(items) > s.max_batch_items:
        raise ApiError(
            422,
            "too_many_images",
            f"{len(items)} images is above the batch limit of {s.max_batch_items}; split the batch",
        )
    return items


@router.post(
    "/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=CREATE_RESPONSES,
    summary="Stylize many images with one model",
    description="Images as repeated `files` parts, one `archive` zip part, and/or `upload_ids` of direct uploads "
    "(images or zips). Progress counts images done of total; GET /v1/jobs/{id}/results/{index} returns each "
    "image once done, /v1/jobs/{id}/result the zip of all once the job succeeded.",
)
def create_batch(
    request: Request,
    response: Response,
    form: Annotated[BatchForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    files: Annotated[list[UploadFile] | None, File(description="images (repeat the part)")] = None,
    archive: Annotated[UploadFile | None, File(description="a zip archive of images")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    params = style_params(services, tenant, form)
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    items = _collect(services, tenant, files or [], archive, form.upload_ids)
    params["filenames"] = [name for name, _, _ in items]
    digest = request_hash({"kind": "batch", **form.model_dump(mode="json")}, [data for _, data, _ in items])
    input_keys: list[str] = []

    def write_inputs(job_id: str) -> None:
        for index, (_, data, info) in enumerate(items):
            key = keys.input(job_id, index, info.ext)
            services.store.put_bytes(key, data, content_type=info.content_type)
            input_keys.append(key)

    def enqueue(record: JobRecord) -> None:
        contracts.enqueue_batch(record.id, input_keys, chunk_size=settings.batch_chunk_size)

    record, created = submit_job(
        services, tenant, JobKind.BATCH, params, len(items), digest, idem, webhook, write_inputs, enqueue
    )
    logger.info("batch job %s for %s: %d images", record.id, tenant, len(items))
    return accepted(response, request, job_public(services, request, record), created)
