"""The common path of every job create: webhook check, request hash, quota slot, idempotent record, inputs,
enqueue; a failure after the record exists fails that job with a clear error instead of leaving it queued.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import Header
from pydantic import BaseModel

from api.deps import Services
from api.errors import ApiError
from workers.exceptions import IdempotencyConflict
from workers.jobstore import JobKind, JobRecord
from workers.json_logs import current_job_id
from workers.webhook_targets import WebhookTargetRefused, WebhookTargetUnresolved, resolve_webhook_target

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200
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


def request_hash(fields: dict, blobs: Iterable[bytes] = ()) -> str:
    """sha256 of the canonical JSON of the request's fields plus the sha256 of each uploaded blob, in order."""
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for blob in blobs:
        h.update(hashlib.sha256(blob).digest())
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


def submit_job(
    services: Services,
    tenant: str,
    kind: JobKind,
    spec: BaseModel,
    total: int,
    digest: str,
    idempotency_key: str | None,
    webhook_url: str | None,
    write_inputs: Callable[[str], None],
    enqueue: Callable[[JobRecord], None],
    job_id: str | None = None,
) -> tuple[JobRecord, bool]:
    """Create (or replay) a job whose params are `spec` (a job spec of workers.contracts); return (record,
    created). Inputs are written before the task is sent. job_id: the id a new job gets, for a spec that names
    keys under it (a replay answers with the existing job instead)."""
    if idempotency_key is not None:
        # A replay answers with the existing job before taking a quota slot or storing inputs again.
        try:
            existing = services.jobs.get_by_idempotency_key(tenant, idempotency_key, digest)
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency_conflict", str(exc)) from exc
        if existing is not None:
            current_job_id.set(existing.id)  # this request's log lines carry the job's id from here on
            logger.info("idempotent replay of job %s for %s", existing.id, tenant)
            return existing, False
    token = services.slots.reserve(tenant)
    try:
        record, created = services.jobs.create(
            kind,
            tenant,
            spec.model_dump(mode="json"),
            total,
            idempotency_key=idempotency_key,
            request_hash=digest,
            webhook_url=webhook_url,
            job_id=job_id,
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
    try:
        write_inputs(record.id)
        enqueue(record)
    except ApiError as exc:
        services.jobs.fail(record.id, exc.code, exc.message)
        raise
    except (
        Exception
    ) as exc:  # any failure after the record exists must fail that job, or it stays queued forever
        logger.exception("job %s could not be submitted", record.id)
        services.jobs.fail(
            record.id, "submit_failed", f"the job could not be queued ({type(exc).__name__}: {exc})"
        )
        raise ApiError(
            503,
            "submit_failed",
            f"job {record.id} could not be queued ({type(exc).__name__}); retry shortly (with a new Idempotency-Key)",
        ) from exc
    return services.jobs.get(record.id) or record, True
