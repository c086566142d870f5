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
from api.job_options import JobOptionsDep, WaitingCreateRoute
from api.schemas import BatchForm, JobPublic, UploadPurpose
from api.submission import (
    CREATE_RESPONSES,
    IdempotencyKey,
    NewJob,
    accepted,
    check_idempotency_key,
    check_model,
    check_webhook_url,
    read_upload_file,
    request_hash,
    resolve_upload,
    submit_job,
)
from workers import keys
from workers.archives import is_zip
from workers.contracts.batch import BATCH, BatchSpec, chunk_messages
from workers.contracts.images import ImageSpec
from workers.jobstore import new_job_id

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["batches"], route_class=WaitingCreateRoute)

# display name, bytes, header facts, and the key of a direct upload that is this one image (read in place by
# the job, not copied; None: the API stores the bytes under the job's inputs).
Item = tuple[str, bytes, ImageInfo, str | None]


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
        images = read_image_archive(data, name, max(room, 0), s.max_archive_bytes, s.max_image_pixels)
        items.extend((entry, body, info, None) for entry, body, info in images)

    for i, upload in enumerate(files):
        name = safe_name(upload.filename or "", f"image-{i}")
        data = read_upload_file(upload, s.max_upload_bytes)
        items.append((name, data, inspect_image(data, name, s.max_image_pixels), None))
    if archive is not None:
        add_archive(
            read_upload_file(archive, s.max_request_bytes), safe_name(archive.filename or "", "archive")
        )
    for upload_id in upload_ids:
        key, _ = resolve_upload(services, tenant, upload_id, {UploadPurpose.image, UploadPurpose.archive})
        data = services.store.get_bytes(key)
        if is_zip(data):
            add_archive(data, upload_id)
        else:
            items.append((upload_id, data, inspect_image(data, upload_id, s.max_image_pixels), key))
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
    options: JobOptionsDep,
    files: Annotated[list[UploadFile] | None, File(description="images (repeat the part)")] = None,
    archive: Annotated[UploadFile | None, File(description="a zip archive of images")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    check_model(services, tenant, form.model)
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    items = _collect(services, tenant, files or [], archive, form.upload_ids)
    spec = BatchSpec(
        **form.model_dump(include=set(ImageSpec.model_fields)), filenames=[name for name, _, _, _ in items]
    )
    job_id = new_job_id()
    input_keys = [key or keys.input(job_id, i, info.ext) for i, (_, _, info, key) in enumerate(items)]

    def write_inputs() -> None:
        for (_, data, info, upload_key), key in zip(items, input_keys, strict=True):
            if upload_key is None:
                services.store.put_bytes(key, data, content_type=info.content_type)

    job = NewJob(
        kind=BATCH,
        spec=spec,
        total=len(items),
        digest=request_hash(
            {"kind": "batch", **form.model_dump(mode="json")}, [data for _, data, _, _ in items]
        ),
        write_inputs=write_inputs,
        messages=lambda job_id: chunk_messages(job_id, input_keys, settings.batch_chunk_size),
        job_id=job_id,
    )
    record, created = submit_job(services, tenant, job, idem, webhook, options.with_form(form))
    logger.info("batch job %s for %s: %d images", record.id, tenant, len(items))
    return accepted(response, request, services, record, created)
