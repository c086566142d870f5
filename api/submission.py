"""What the create routes share (no route module imports another): reading a create's input (a file part or a
direct upload), the checks every create makes (model, model name, webhook URL, Idempotency-Key), and the common
path of a job create: request hash, quota slot, idempotent record, inputs, enqueue. A failure after the record
exists fails that job with a clear error instead of leaving it queued.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Header, Request, Response, UploadFile, status
from pydantic import BaseModel

from api.deps import Services
from api.errors import ApiError, not_found
from api.images import safe_name
from api.job_options import JobOptions
from api.json_bodies import external_url, is_external
from api.schemas import ErrorResponse, JobPublic, UploadPurpose
from api.views import job_public
from workers import enqueue, keys, redis_keys
from workers.contracts.base import JobKind, Message
from workers.contracts.fetch import RemoteInput, fetch_message
from workers.exceptions import IdempotencyConflict
from workers.jobstore import MAX_IDEMPOTENCY_KEY, JobRecord
from workers.json_logs import current_job_id
from workers.registry import MODEL_NAME_RULE, valid_model_name
from workers.webhook_targets import WebhookTargetRefused, WebhookTargetUnresolved, resolve_webhook_target

logger = logging.getLogger(__name__)

# The header every create accepts; the schema states its length, check_idempotency_key the rest.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        description="printable text, not only spaces; the same key and body return the same result, "
        "another body with it is 409",
    ),
]


def request_hash(fields: dict, blobs: Iterable[bytes] = (), *, digests: Iterable[bytes] = ()) -> str:
    """sha256 of the canonical JSON of the request's fields plus the sha256 of each uploaded blob, in order
    (`digests`: those sha256 already computed, for blobs the request does not hold whole)."""
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for blob in blobs:
        h.update(hashlib.sha256(blob).digest())
    for digest in digests:
        h.update(digest)
    return h.hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters (got {key[:40]!r})",
        )
    return key


def check_webhook_url(url: str | None, allow_private: bool) -> str | None:
    """422 for a webhook URL the worker would refuse: the same rule (workers.webhook_targets) decides both."""
    if url is None:
        return None
    try:
        resolve_webhook_target(url, allow_private)
    except WebhookTargetRefused as exc:
        code = "invalid_webhook_url" if exc.address is None else "webhook_url_not_allowed"
        raise ApiError(422, code, str(exc)) from exc
    except WebhookTargetUnresolved as exc:
        raise ApiError(422, "invalid_webhook_url", f"webhook_url: {exc}") from exc
    return url


# FastAPI's `responses` argument: status -> an OpenAPI response object (Any: free-form JSON by design).
Responses = dict[int | str, dict[str, Any]]

CREATE_RESPONSES: Responses = {
    200: {
        "model": JobPublic,
        "description": "the finished job (Prefer: wait, and it ended within the wait), or an idempotent replay",
        "headers": {
            "Preference-Applied": {
                "description": "wait=N when the answer waited for the job to end",
                "schema": {"type": "string"},
            },
            "Idempotent-Replayed": {
                "description": "true when an earlier create with this Idempotency-Key made the job",
                "schema": {"type": "string"},
            },
        },
    },
    404: {"model": ErrorResponse, "description": "unknown model or upload id"},
    409: {"model": ErrorResponse, "description": "Idempotency-Key reused with a different body"},
    413: {
        "model": ErrorResponse,
        "description": "a file above its limit, the whole request above ANIMEGAN_MAX_REQUEST_BYTES, or a "
        "direct upload that holds more than its declared size (upload_size_mismatch)",
    },
    415: {
        "model": ErrorResponse,
        "description": "not an image, an unsupported format, a truncated image; multipart_required: a JSON (or "
        "other non-form) body",
    },
    422: {
        "model": ErrorResponse,
        "description": "bad parameter (max_side is required with size_mode=max_side and refused otherwise; "
        "file and upload_id exclude each other), an Idempotency-Key that is empty or not printable, too many "
        "pixels, a decompression bomb, a damaged archive, a direct upload smaller than declared "
        "(upload_size_mismatch)",
    },
    429: {"model": ErrorResponse, "description": "rate limit or concurrent-job limit; see Retry-After"},
}


def check_model(services: Services, tenant: str, model: str, field: str | None = None) -> None:
    """404 unless `model` is a model this tenant can use (its own or a public one)."""
    if services.registry.get(model, tenant) is None:
        where = f"{field}: " if field else ""
        raise ApiError(
            404,
            "model_not_found",
            f"{where}model {model!r} does not exist; GET /v1/models lists the usable ones",
        )


def check_model_name(services: Services, tenant: str, name: str) -> None:
    """422 for a name the registry refuses, 409 for one this tenant already has."""
    if not valid_model_name(name):
        raise ApiError(
            422, "invalid_parameters", f"name: {name!r} is not a valid model name; use {MODEL_NAME_RULE}"
        )
    if services.registry.get(name, tenant) is not None:
        raise ApiError(
            409, "model_exists", f"name: a model named {name!r} already exists; choose another name"
        )


def read_upload_file(upload: UploadFile, limit: int) -> bytes:
    """The whole part (already spooled by the form parser), refusing (413) one above `limit` bytes."""
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        name = safe_name(upload.filename or "", "file")
        raise ApiError(413, "upload_too_large", f"{name} is larger than the {limit}-byte limit per file")
    return data


def load_upload(services: Services, tenant: str, upload_id: str) -> dict[str, str]:
    """The Redis record of `tenant`'s direct upload; 404 for others' or unknown ids."""
    found = services.redis.hgetall(redis_keys.upload(upload_id)) if keys.SEGMENT_RE.match(upload_id) else {}
    raw = cast(dict[str, str], found)  # the API's client decodes responses (decode_responses=True)
    if not raw or raw.get("owner") != tenant:
        raise not_found("upload", upload_id)
    return raw


def resolve_upload(
    services: Services, tenant: str, upload_id: str, purposes: set[UploadPurpose]
) -> tuple[str, int]:
    """The storage key and size of a finished upload of `tenant`; 404 for others' or unknown ids.

    Jobs read the object at this key where it lies; it is never copied. Nothing in the service deletes an upload
    once a job has it (only an object of the wrong size, here, before any job), and the upload record's expiry
    (job_ttl_seconds) drops only the id, not the object, so a queued job still finds its input. An operator's
    lifecycle rule on uploads/ must outlive the jobs (README, "Data lifetime"); a job whose object is gone
    fails as input_missing / dataset_missing. An upload PUT again after a job took it: workers decode images
    with the same limits again, and refuse a dataset zip whose sha256 differs from the one the API checked.
    """
    record = load_upload(services, tenant, upload_id)
    if record["purpose"] not in purposes:
        wanted = " or ".join(sorted(p.value for p in purposes))
        raise ApiError(
            422,
            "wrong_upload_purpose",
            f"upload {upload_id} was created for {record['purpose']!r}; this field needs an upload for {wanted}",
        )
    key = keys.upload(tenant, upload_id)
    if not services.store.exists(key):
        raise ApiError(
            409,
            "upload_incomplete",
            f"upload {upload_id} has not received its bytes yet; PUT them to its url first",
        )
    size, declared = services.store.size(key), int(record["size"])
    if size != declared:
        # The presigned URL signs the declared length, but not every S3-compatible server checks it: the stored
        # object is refused here and deleted, so bytes beyond what was declared never stay in storage.
        services.store.delete(key)
        logger.warning(
            "upload %s of %s held %d bytes, %d declared; deleted", upload_id, tenant, size, declared
        )
        raise ApiError(
            413 if size > declared else 422,
            "upload_size_mismatch",
            f"upload {upload_id} held {size} bytes but {declared} were declared; it was deleted, PUT exactly "
            f"{declared} bytes again",
        )
    return key, size


@dataclass(frozen=True)
class SourceFile:
    """A create's one input, read so the API can check it, or the URL a worker fetches it from."""

    data: bytes  # empty for a URL input
    name: str  # what errors and the job show for it
    upload_key: str | None  # a direct upload's object, which the job reads in place; None: a file part
    url: str | None = None  # an input by URL (api.json_bodies): checked here, fetched by the egress workers


def check_input_url(services: Services, url: str, field: str) -> str:
    """422 for an input URL the fetching worker would refuse: the webhook rule (workers.webhook_targets), with
    its own switch for private addresses. The host is resolved here only to check it; nothing is downloaded."""
    try:
        resolve_webhook_target(
            url,
            services.settings.allow_private_input_urls,
            field=field,
            switch="ANIMEGAN_ALLOW_PRIVATE_INPUT_URLS",
        )
    except WebhookTargetRefused as exc:
        code = "invalid_input_url" if exc.address is None else "input_url_not_allowed"
        raise ApiError(422, code, str(exc)) from exc
    except WebhookTargetUnresolved as exc:
        raise ApiError(422, "invalid_input_url", str(exc)) from exc
    return url


def refuse_url_input(field: str) -> None:
    """422 for an input by URL where the API must read the file itself before the job exists (a video's probe,
    a dataset's or archive's check): the message says what to send instead."""
    raise ApiError(
        422,
        "input_url_not_supported",
        f"{field}: this input cannot be given by URL (the API checks it before the job exists); send it as a "
        "multipart part, a data: URI, or a direct upload (POST /v1/uploads, then its upload_id). Images by URL: "
        "POST /v1/stylize and /v1/batches",
    )


def with_fetch(job_id: str, inputs: list[RemoteInput], messages: Iterable[Message]) -> list[Message]:
    """A job's first tasks, behind the fetch of its URL inputs when it has any."""
    messages = list(messages)
    return [fetch_message(job_id, inputs, messages)] if inputs else messages


def file_or_upload(
    services: Services,
    tenant: str,
    file: UploadFile | None,
    upload_id: str | None,
    purpose: UploadPurpose,
    limit: int,
    fallback_name: str,
    by_url: bool = False,
) -> SourceFile:
    """The input sent as the `file` part or named by the `upload_id` of a direct upload of `purpose`; with
    `by_url`, also an https:// URL (SourceFile.url, fetched by a worker before the job runs)."""
    if (file is None) == (upload_id is None):
        raise ApiError(422, "invalid_parameters", "file, upload_id: send exactly one of them")
    if file is not None and is_external(file):
        if not by_url:
            refuse_url_input("file")
        url = check_input_url(services, external_url(file, "file"), "file")
        return SourceFile(b"", url, None, url=url)
    if file is not None:
        return SourceFile(read_upload_file(file, limit), safe_name(file.filename or "", fallback_name), None)
    assert upload_id is not None  # exactly one of the two, checked above
    key, _ = resolve_upload(services, tenant, upload_id, {purpose})
    return SourceFile(services.store.get_bytes(key), upload_id, key)


@dataclass(frozen=True)
class NewJob:
    """A checked create, ready to submit: its kind and typed spec, and how to store its inputs and start it."""

    kind: JobKind
    spec: BaseModel  # an instance of kind.spec: the record's params
    total: int  # the progress total: images, frames, or 0 (a training run counts steps itself)
    digest: str  # request_hash of the request, compared on an Idempotency-Key replay
    write_inputs: Callable[[], None]  # stores what the API holds (file parts) before any task is sent
    messages: Callable[[str], Iterable[Message]]  # job id -> the tasks that start the job
    job_id: str | None = None  # the id a new job gets, for a spec that names keys under it
    model_name: str | None = None  # a training's model, reserved for the tenant while the job may register it


def submit_job(
    services: Services,
    tenant: str,
    job: NewJob,
    idempotency_key: str | None,
    webhook_url: str | None,
    options: JobOptions,
) -> tuple[JobRecord, bool]:
    """Create (or replay) `job` with the options every kind takes (deadline, webhook events); return (record,
    created). Inputs are written before the task is sent; a replay answers with the existing job instead."""
    if not isinstance(job.spec, job.kind.spec):
        raise TypeError(
            f"a {job.kind.name} job takes a {job.kind.spec.__name__}, not {type(job.spec).__name__}"
        )
    if idempotency_key is not None:
        # A replay answers with the existing job before taking a quota slot or storing inputs again.
        existing = _replayed(services, tenant, idempotency_key, job.digest)
        if existing is not None:
            return existing, False
    release_name = _reserve_model_name(services, tenant, job)
    try:
        record, created = _create(services, tenant, job, idempotency_key, webhook_url, options)
    except BaseException:
        release_name()
        raise
    if not created:
        release_name()  # the job that answers holds its own reservation
    return record, created


def _reserve_model_name(services: Services, tenant: str, job: NewJob) -> Callable[[], None]:
    """409 while another queued or running training of this tenant will register the same model name; else
    reserve it for the new job and return how to release it (a create that makes no job)."""
    name, job_id = job.model_name, job.job_id
    if name is None:
        return lambda: None
    if job_id is None:
        raise TypeError("a job that reserves a model name needs its job_id chosen before submit")

    def active(holder: str) -> bool:
        record = services.jobs.get(holder)
        return record is not None and not record.is_terminal

    holder = services.registry.reserve_name(name, tenant, job_id, active)
    if holder is not None:
        raise ApiError(
            409,
            "model_exists",
            f"name: training job {holder} is already creating a model named {name!r}; choose another name, or "
            "wait until that job has ended",
        )
    return lambda: services.registry.release_name(name, tenant, job_id)


def _create(
    services: Services,
    tenant: str,
    job: NewJob,
    idempotency_key: str | None,
    webhook_url: str | None,
    options: JobOptions,
) -> tuple[JobRecord, bool]:
    token = services.slots.reserve(tenant)
    try:
        record, created = services.jobs.create(
            job.kind.name,
            tenant,
            job.spec.model_dump(mode="json"),
            job.total,
            idempotency_key=idempotency_key,
            request_hash=job.digest,
            webhook_url=webhook_url,
            job_id=job.job_id,
            deadline=options.deadline,
            webhook_events=tuple(e.value for e in options.webhook_events),
            storage_id=services.storage_id,
        )
    except IdempotencyConflict as exc:
        services.slots.release(tenant, token)
        raise ApiError(409, "idempotency_conflict", str(exc)) from exc
    except BaseException:
        services.slots.release(tenant, token)
        raise
    current_job_id.set(record.id)
    if not created:
        services.slots.release(tenant, token)
        logger.info("idempotent replay of job %s for %s", record.id, tenant)
        return record, False
    services.slots.assign(tenant, token, record.id)
    _start(services, job, record.id)
    return record, True  # as created (queued): a worker may already be on it, the job's own URL tells


def _replayed(services: Services, tenant: str, idempotency_key: str, digest: str) -> JobRecord | None:
    """The job an earlier create with this key made (409 if its body differed); None for a new key."""
    try:
        existing = services.jobs.get_by_idempotency_key(tenant, idempotency_key, digest)
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc)) from exc
    if existing is not None:
        current_job_id.set(existing.id)  # this request's log lines carry the job's id from here on
        logger.info("idempotent replay of job %s for %s", existing.id, tenant)
    return existing


def _start(services: Services, job: NewJob, job_id: str) -> None:
    """Store the inputs, then send the first tasks; any failure fails the new job (or it stays queued forever)."""
    try:
        job.write_inputs()
        enqueue.send(job.messages(job_id))
    except ApiError as exc:
        services.jobs.fail(job_id, exc.code, exc.message)
        raise
    except Exception as exc:
        logger.exception("job %s could not be submitted", job_id)
        services.jobs.fail(
            job_id, "submit_failed", f"the job could not be queued ({type(exc).__name__}: {exc})"
        )
        raise ApiError(
            503,
            "submit_failed",
            f"job {job_id} could not be queued ({type(exc).__name__}); retry shortly (with a new Idempotency-Key)",
        ) from exc


def accepted(
    response: Response, request: Request, services: Services, record: JobRecord, created: bool
) -> JobPublic:
    """202 with Location for a new job; 200 for an idempotent replay of an existing one."""
    public = job_public(services, request, record)
    response.status_code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    response.headers["Location"] = public.links.self
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return public
