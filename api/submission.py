"""The common path of every job create: webhook check, request hash, quota slot, idempotent record, inputs,
enqueue; a failure after the record exists fails that job with a clear error instead of leaving it queued.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

from api.deps import Services
from api.errors import ApiError
from workers.exceptions import IdempotencyConflict
from workers.jobstore import JobKind, JobRecord

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 200


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
    """Refuse webhook URLs that are not http(s) or that resolve to private, loopback or link-local addresses."""
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ApiError(422, "invalid_webhook_url", f"webhook_url {url!r} must be an http:// or https:// URL")
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ApiError(
            422, "invalid_webhook_url", f"webhook_url host {parsed.hostname!r} does not resolve ({exc})"
        ) from exc
    if allow_private:
        return url
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved or addr.is_multicast:
            raise ApiError(
                422,
                "webhook_url_not_allowed",
                f"webhook_url {url!r} resolves to {addr}, a private/loopback/link-local address; use a public "
                "host (or set ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS on a trusted network)",
            )
    return url


def submit_job(
    services: Services,
    tenant: str,
    kind: JobKind,
    params: dict,
    total: int,
    digest: str,
    idempotency_key: str | None,
    webhook_url: str | None,
    write_inputs: Callable[[str], None],
    enqueue: Callable[[JobRecord], None],
) -> tuple[JobRecord, bool]:
    """Create (or replay) a job; return (record, created). Inputs are written before the task is sent."""
    if idempotency_key is not None:
        # A replay answers with the existing job before taking a quota slot or storing inputs again.
        try:
            existing = services.jobs.get_by_idempotency_key(tenant, idempotency_key, digest)
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency_conflict", str(exc)) from exc
        if existing is not None:
            return existing, False
    token = services.slots.reserve(tenant)
    try:
        record, created = services.jobs.create(
            kind,
            tenant,
            params,
            total,
            idempotency_key=idempotency_key,
            request_hash=digest,
            webhook_url=webhook_url,
        )
    except IdempotencyConflict as exc:
        services.slots.release(tenant, token)
        raise ApiError(409, "idempotency_conflict", str(exc)) from exc
    except BaseException:
        services.slots.release(tenant, token)
        raise
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
