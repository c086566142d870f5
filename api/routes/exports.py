"""POST /v1/models/{name}/exports: export a model the caller can use as an ONNX graph -> a queued export job (202);
its result (GET /v1/jobs/{id}/result) is the .onnx file, a presigned download on S3."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, status
from pydantic import Field

from api.deps import ServicesDep, Tenant
from api.errors import ApiError
from api.job_options import JobOptionsDep, WaitingCreateRoute
from api.schemas import JobForm, JobPublic
from api.submission import (
    CREATE_RESPONSES,
    IdempotencyKey,
    NewJob,
    accepted,
    check_idempotency_key,
    check_model,
    check_webhook_url,
    request_hash,
    submit_job,
)
from workers.contracts.export import EXPORT, MAX_OPSET, MIN_OPSET, ExportSpec, export_message

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=WaitingCreateRoute)


class ExportForm(JobForm):
    """POST /v1/models/{name}/exports form fields (all optional; JobForm's webhook_url, webhook_events_filter and
    deadline as on every create route)."""

    format: str = Field("onnx", pattern="^onnx$", description="the file format: onnx")
    opset: int = Field(MIN_OPSET, ge=MIN_OPSET, le=MAX_OPSET, description="ONNX opset of the graph")


@router.post(
    "/{name}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=CREATE_RESPONSES,
    summary="Export a model as an ONNX graph",
    description="Queues an export job (202). The graph takes float32 NCHW images in [-1, 1] of any batch and "
    "any height and width that are multiples of 4; its metadata says how to pre- and post-process. Once the "
    "job succeeded, GET its result for the .onnx file (a redirect to a presigned URL on S3).",
)
def create_export(
    name: str,
    request: Request,
    response: Response,
    form: Annotated[ExportForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    options: JobOptionsDep,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    idem = check_idempotency_key(idempotency_key)
    check_model(services, tenant, name)
    info = services.registry.get(name, tenant)
    if info is not None and info.config.get("arch") == "onnx":
        raise ApiError(
            422, "already_onnx", f"model {name!r} is an ONNX graph already; there is nothing to export"
        )
    spec = ExportSpec(model=name, format=form.format, opset=form.opset)
    webhook = check_webhook_url(form.webhook_url, services.settings.allow_private_webhooks)
    job = NewJob(
        kind=EXPORT,
        spec=spec,
        total=1,
        # The model's registered version is part of the request: re-uploading it and exporting with the same
        # Idempotency-Key is a different request.
        digest=request_hash({"kind": "export", **form.model_dump(mode="json"), "model": name,
                             "version": info.created_at if info else None}),
        write_inputs=lambda: None,  # the model is in storage already
        messages=lambda job_id: [export_message(job_id)],
    )  # fmt: skip
    record, created = submit_job(services, tenant, job, idem, webhook, options.with_form(form))
    logger.info("export job %s for %s (%s, opset %d)", record.id, tenant, name, spec.opset)
    return accepted(response, request, services, record, created)
