"""POST /v1/stylize: one image (a multipart file or the id of a direct upload) -> a queued stylize job (202)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from api.deps import ServicesDep, Tenant
from api.images import inspect_image
from api.job_options import JobOptionsDep, WaitingCreateRoute
from api.schemas import JobPublic, StylizeForm, UploadPurpose
from api.submission import (
    CREATE_RESPONSES,
    IdempotencyKey,
    NewJob,
    accepted,
    check_idempotency_key,
    check_model,
    check_webhook_url,
    file_or_upload,
    request_hash,
    submit_job,
    with_fetch,
)
from workers import keys
from workers.contracts.fetch import RemoteInput
from workers.contracts.images import STYLIZE, ImageSpec, StylizeSpec, stylize_message
from workers.jobstore import new_job_id

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["stylize"], route_class=WaitingCreateRoute)


@router.post(
    "/stylize",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=CREATE_RESPONSES,
    summary="Stylize one image",
    description="Send the image as the `file` part, or the `upload_id` of a finished direct upload; or a JSON "
    "body of the same fields whose `file` is a data: URI or an https:// URL (fetched by a worker). Returns the "
    "queued job (202) with its URL in Location; poll it, stream its events, then GET its result.",
)
def create_stylize(
    request: Request,
    response: Response,
    form: Annotated[StylizeForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    options: JobOptionsDep,
    file: Annotated[UploadFile | None, File(description="the image (JPEG, PNG, WebP, BMP)")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    source = file_or_upload(
        services,
        tenant,
        file,
        form.upload_id,
        UploadPurpose.image,
        settings.max_upload_bytes,
        "image",
        by_url=True,
    )
    # An input by URL is checked by the worker that fetches it (workers.jobs.fetch), before the job runs.
    info = None if source.url else inspect_image(source.data, source.name, settings.max_image_pixels)
    check_model(services, tenant, form.model)
    spec = StylizeSpec(
        **form.model_dump(include=set(ImageSpec.model_fields)),
        filename=source.name,
        width=info and info.width,
        height=info and info.height,
    )
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    job_id = new_job_id()
    input_key = source.upload_key or keys.input(job_id, 0, info.ext if info else "img")
    fetched = (
        []
        if source.url is None
        else [RemoteInput(url=source.url, key=input_key, field="file", max_bytes=settings.max_upload_bytes)]
    )

    def write_inputs() -> None:
        if info is not None and source.upload_key is None:
            services.store.put_bytes(input_key, source.data, content_type=info.content_type)

    job = NewJob(
        kind=STYLIZE,
        spec=spec,
        total=1,
        digest=request_hash(
            {"kind": "stylize", "url": source.url, **form.model_dump(mode="json")}, [source.data]
        ),
        write_inputs=write_inputs,
        messages=lambda job_id: with_fetch(job_id, fetched, [stylize_message(job_id, input_key)]),
        job_id=job_id,
    )
    record, created = submit_job(services, tenant, job, idem, webhook, options.with_form(form))
    size = f"{info.width}x{info.height}" if info else "by URL"
    logger.info("stylize job %s for %s (%s, %s)", record.id, tenant, source.name, size)
    return accepted(response, request, services, record, created)
