"""POST /v1/trainings: two dataset zips (photos, style images; as form parts or upload ids), validated
hyperparameters and the name of the model to create -> a training job run as resumable segments by workers.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import uuid
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from pydantic import ValidationError

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError, validation_message
from api.images import check_dataset_archive, check_paired_archives, safe_name
from api.job_options import JobOptionsDep, WaitingCreateRoute
from api.json_bodies import is_external
from api.schemas import JobPublic, TrainingForm, UploadPurpose
from api.submission import (
    CREATE_RESPONSES,
    IdempotencyKey,
    NewJob,
    accepted,
    check_idempotency_key,
    check_model,
    check_model_name,
    check_webhook_url,
    refuse_url_input,
    request_hash,
    resolve_upload,
    submit_job,
)
from workers import keys
from workers.archives import ArchiveLimits
from workers.contracts.training import (
    MODE_PARTS,
    TRAIN,
    DatasetArchive,
    TrainingHyperparameters,
    TrainingMode,
    TrainingSpec,
    segment_message,
)
from workers.jobstore import new_job_id
from workers.storage.ranged import RangedObject
from workers.training_memory import estimate_step_bytes

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["trainings"], route_class=WaitingCreateRoute)


def parse_hyperparameters(text: str) -> TrainingHyperparameters:
    try:
        return TrainingHyperparameters.model_validate_json(text or "{}")
    except ValidationError as exc:
        errors = [{**e, "loc": ("hyperparameters", *e.get("loc", ()))} for e in exc.errors()]
        raise ApiError(422, "invalid_parameters", validation_message(errors)) from exc


def check_training_memory(limit: int, mode: TrainingMode, hyper: TrainingHyperparameters) -> None:
    """422 for a combination of hyperparameters whose training step could not fit the training GPUs."""
    estimate = estimate_step_bytes(mode, hyper)
    if estimate > limit:
        raise ApiError(
            422,
            "training_too_large",
            f"hyperparameters: this {mode.value} training would keep about {estimate / 1024**3:,.0f} GiB per step "
            f"(image_size, batch_size and base_channels together), above the {limit / 1024**3:,.0f} GiB its GPUs "
            "have; lower batch_size first, then image_size or base_channels",
        )


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


@dataclass(frozen=True)
class StagedPart:
    """A checked dataset part: where the API reads it, its sha256, and the direct upload it is (None: a form
    part, stored by the API under a fresh dataset key)."""

    source: Path | RangedObject  # a form part spooled here, or the upload read where it lies (ranged GETs)
    sha256: bytes
    upload_key: str | None


def _dataset_limits(services: Services) -> ArchiveLimits:
    s = services.settings
    return ArchiveLimits(max_images=s.max_dataset_images, max_total_bytes=s.max_archive_bytes)


def _stage_part(
    services: Services,
    tenant: str,
    part: str,
    upload: UploadFile | None,
    upload_id: str | None,
    work: Path,
    stack: ExitStack,
) -> StagedPart:
    """The dataset zip of `part`, checked by the one zip checker (workers.archives) as the worker will unpack
    it. A direct upload is never downloaded whole: its directory and members are read by ranged GETs."""
    if (upload is None) == (upload_id is None):
        raise ApiError(422, "invalid_parameters", f"{part}, {part}_upload_id: send exactly one of them")
    limit = services.settings.max_dataset_bytes
    source: Path | RangedObject
    if upload is not None and is_external(upload):
        refuse_url_input(part)
    if upload is not None:
        source = work / f"{part}.zip"
        upload.file.seek(0)
        with source.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        label = safe_name(upload.filename or "", f"{part}.zip")
        size, key = source.stat().st_size, None
    else:
        assert upload_id is not None  # exactly one of the two, checked above
        key, size = resolve_upload(services, tenant, upload_id, {UploadPurpose.dataset})
        source = stack.enter_context(closing(RangedObject(services.store, key, size)))
        label = upload_id
    if size > limit:
        raise ApiError(413, "dataset_too_large", f"{part}: {label} is larger than the {limit}-byte limit")
    count = check_dataset_archive(source, f"{part} ({label})", _dataset_limits(services))
    digest = _file_digest(source) if isinstance(source, Path) else source.sha256()
    logger.debug("dataset part %s: %d images", part, count)
    return StagedPart(source, digest, key)


@router.post(
    "/trainings",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={**CREATE_RESPONSES, 409: {"description": "model name taken, or Idempotency-Key conflict"}},
    summary="Train a new style",
    description="Three modes. `unpaired` (AnimeGAN): `photos` and `styles` zips (the worker needs VGG19 "
    "weights). `paired`: `photos` and `targets` zips whose images pair up by file name, each target the photo's "
    "size or its reference size. `distill`: `photos` and `teacher`, a model name this key can use. Each zip may "
    "instead be `<part>_upload_id` of a direct upload. `hyperparameters` is a JSON object "
    "(TrainingHyperparameters). Progress shows phase, step, epoch and the latest losses; samples and "
    "checkpoints are listed at /v1/jobs/{id}/files. On success the generator is registered as model `name`, "
    "usable by stylize and batch jobs at once.",
)
def create_training(
    request: Request,
    response: Response,
    form: Annotated[TrainingForm, Form()],
    tenant: Tenant,
    services: ServicesDep,
    options: JobOptionsDep,
    photos: Annotated[UploadFile | None, File(description="zip of real photos")] = None,
    styles: Annotated[UploadFile | None, File(description="zip of style (anime) images")] = None,
    targets: Annotated[
        UploadFile | None, File(description="paired: zip of targets named as the photos")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    settings = services.settings
    idem = check_idempotency_key(idempotency_key)
    hyper = parse_hyperparameters(form.hyperparameters)
    check_training_memory(settings.max_training_memory_bytes, form.mode, hyper)
    check_model_name(services, tenant, form.name)
    for field in ("fine_tune_from", "teacher"):
        model = getattr(form, field)
        if model is not None:
            check_model(services, tenant, model, field)
            info = services.registry.get(model, tenant)
            if info is not None and info.config.get("arch") == "onnx":
                raise ApiError(
                    422,
                    "invalid_parameters",
                    f"{field}: model {model!r} is an ONNX graph, which runs but cannot be trained from; "
                    "use a .safetensors or .pt model",
                )
    files = {"photos": photos, "styles": styles, "targets": targets}
    upload_ids = {p: getattr(form, f"{p}_upload_id") for p in files}
    _check_parts_of_mode(form, files, upload_ids)
    webhook = check_webhook_url(form.webhook_url, settings.allow_private_webhooks)
    with tempfile.TemporaryDirectory(prefix="animegan-dataset-") as tmp, ExitStack() as stack:
        staged = {
            part: _stage_part(services, tenant, part, files[part], upload_ids[part], Path(tmp), stack)
            for part in MODE_PARTS[form.mode]
        }
        if form.mode == TrainingMode.paired:
            check_paired_archives(
                staged["photos"].source, staged["targets"].source, _dataset_limits(services)
            )
        spec = _training_spec(form, hyper, staged)
        fields = {
            "kind": "train",
            **form.model_dump(mode="json"),
            "hyperparameters": hyper.model_dump(mode="json", exclude_none=True),
        }

        def write_inputs() -> None:
            for part, staged_part in staged.items():
                if isinstance(staged_part.source, Path):
                    services.store.put_file(spec.datasets[part].key, staged_part.source)

        job = NewJob(
            kind=TRAIN,
            spec=spec,
            total=0,
            digest=request_hash(fields, [staged[p].sha256 for p in MODE_PARTS[form.mode]]),
            write_inputs=write_inputs,
            messages=lambda job_id: [segment_message(job_id, 0)],
            job_id=new_job_id(),
            model_name=form.name,
        )
        record, created = submit_job(services, tenant, job, idem, webhook, options.with_form(form))
    logger.info("training job %s for %s: model %s, mode %s", record.id, tenant, form.name, form.mode.value)
    return accepted(response, request, services, record, created)


def _check_parts_of_mode(
    form: TrainingForm, files: dict[str, UploadFile | None], upload_ids: dict[str, str | None]
) -> None:
    """422 unless the form sends exactly the dataset parts (and teacher) of its mode."""
    mode = form.mode
    unused = [
        p for p in files if p not in MODE_PARTS[mode] and (files[p] is not None or upload_ids[p] is not None)
    ]
    if unused or (form.teacher is not None) != (mode == TrainingMode.distill):
        wanted = " and ".join(MODE_PARTS[mode]) + (" and teacher" if mode == TrainingMode.distill else "")
        given = ", ".join(unused + (["teacher"] if form.teacher and mode != TrainingMode.distill else []))
        raise ApiError(
            422,
            "invalid_parameters",
            f"mode: the {mode.value} mode takes {wanted}"
            + (f"; {given} does not belong to it" if given else "; teacher is missing"),
        )


def _training_spec(
    form: TrainingForm, hyper: TrainingHyperparameters, staged: dict[str, StagedPart]
) -> TrainingSpec:
    """The job's spec: a form part is stored under a fresh dataset id, a direct upload is read where it lies."""
    dataset_id = uuid.uuid4().hex
    return TrainingSpec(
        name=form.name,
        mode=form.mode,
        hyperparameters=hyper,
        datasets={
            part: DatasetArchive(
                key=staged_part.upload_key or keys.dataset_archive(dataset_id, part),
                sha256=staged_part.sha256.hex(),
            )
            for part, staged_part in staged.items()
        },
        fine_tune_from=form.fine_tune_from,
        teacher=form.teacher,
    )
