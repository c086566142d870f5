"""POST /v1/trainings: two dataset zips (photos, style images; as form parts or upload ids), validated
hyperparameters and the name of the model to create -> a training job run as resumable segments by workers.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from pydantic import ValidationError

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError, validation_message
from api.images import check_dataset_archive, safe_name
from api.routes.jobs import job_public
from api.routes.stylize import CREATE_RESPONSES, accepted
from api.routes.uploads import resolve_upload
from api.schemas import JobPublic, TrainingForm, TrainingHyperparameters, UploadPurpose
from api.submission import IdempotencyKey, check_idempotency_key, check_webhook_url, request_hash, submit_job
from workers import contracts, keys
from workers.jobstore import JobKind, JobRecord

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["trainings"])

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PARTS = ("photos", "styles")


def parse_hyperparameters(text: str) -> TrainingHyperparameters:
    try:
        return TrainingHyperparameters.model_validate_json(text or "{}")
    except ValidationError as exc:
        errors = [{**e, "loc": ("hyperparameters", *e.get("loc", ()))} for e in exc.errors()]
        raise ApiError(422, "invalid_parameters", validation_message(errors)) from exc


def check_model_name(services: Services, tenant: str, name: str) -> None:
    if not MODEL_NAME_RE.match(name):
        raise ApiError(
            422,
            "invalid_parameters",
            f"name: {name!r} is not a valid model name; use 1-64 lowercase letters, digits, '-' or '_'",
        )
    if services.registry.get(name, tenant) is not None:
        raise ApiError(
            409, "model_exists", f"name: a model named {name!r} already exists; choose another name"
        )


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _stage_part(
    services: Services, tenant: str, part: str, upload: UploadFile | None, upload_id: str | None, work: Path
) -> Path:
    """The dataset zip of `part` as a local file, checked (zip of images, size limits)."""
    if (upload is None) == (upload_id is None):
        raise ApiError(422, "invalid_parameters", f"{part}, {part}_upload_id: send exactly one of them")
    path = work / f"{part}.zip"
    limit = services.settings.max_dataset_bytes
    if upload is not None:
        upload.file.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        label = safe_name(upload.filename or "", f"{part}.zip")
    else:
        key, size = resolve_upload(services, tenant, upload_id, {UploadPurpose.dataset})
        if size > limit:
            raise ApiError(413, "dataset_too_large", f"{part}: {size} bytes is above the {limit}-byte limit")
        services.store.get_file(key, path)
        label = upload_id
    if path.stat().st_size > limit:
        raise ApiError(413, "dataset_too_large", f"{part}: {label} is larger than the {limit}-byte limit")
    settings = services.settings
    count = check_dataset_archive(
        path, f"{part} ({label})", settings.max_archive_bytes, settings.max_dataset_images
    )
    logger.debug("dataset part %s: %d images", part, count)
    return path


@router.post(
    "/trainings",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={**CREATE_RESPONSES, 409: {"description": "model name taken, or Idempotency-Key conflict"}},
    summary="Train a new style",
    description="`photos` and `styles` are zip archives of images (or `photos_upload_id`/`styles_upload_id` of "
    "direct uploads); `hyperparameters` is a JSON object (TrainingHyperparameters). Progress shows phase, step, "
    "epoch and the latest losses; samples and checkpoints are listed at /v1/jobs/{id}/files. On success the "
    "generator is registered as model `name`, usable by stylize and batch jobs at once.",
)
def create_training(
    request: Request,
    response: Response,
    form: Annotated[TrainingForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    photos: Annotated[UploadFile | None, File(description="zip of real photos")] = None,
    styles: Annotated[UploadFile | None, File(description="zip of style (anime) images")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    hyper = parse_hyperparameters(form.hyperparameters)
    check_model_name(services, tenant, form.name)
    if form.fine_tune_from is not None and services.registry.get(form.fine_tune_from, tenant) is None:
        raise ApiError(
            404,
            "model_not_found",
            f"fine_tune_from: model {form.fine_tune_from!r} does not exist for this key",
        )
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    with tempfile.TemporaryDirectory(prefix="animegan-dataset-") as tmp:
        work = Path(tmp)
        staged = {
            "photos": _stage_part(services, tenant, "photos", photos, form.photos_upload_id, work),
            "styles": _stage_part(services, tenant, "styles", styles, form.styles_upload_id, work),
        }
        dataset_id = uuid.uuid4().hex
        params = {
            "name": form.name,
            "hyperparameters": hyper.model_dump(mode="json", exclude_none=True),
            "dataset_id": dataset_id,
            "fine_tune_from": form.fine_tune_from,
        }
        fields = {
            "kind": "train",
            **form.model_dump(mode="json"),
            "hyperparameters": params["hyperparameters"],
        }
        digest = request_hash(fields, [_file_digest(staged[p]) for p in PARTS])

        def write_inputs(_job_id: str) -> None:
            for part in PARTS:
                services.store.put_file(keys.dataset_archive(dataset_id, part), staged[part])

        def enqueue(record: JobRecord) -> None:
            contracts.enqueue_training(record.id)

        record, created = submit_job(
            services, tenant, JobKind.TRAIN, params, 0, digest, idem, webhook, write_inputs, enqueue
        )
    logger.info("training job %s for %s: model %s, preset %s", record.id, tenant, form.name, hyper.preset)
    return accepted(response, request, job_public(services, request, record), created)
