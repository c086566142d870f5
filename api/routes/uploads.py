"""Direct uploads of large inputs, archives, datasets and model files: POST /v1/uploads hands out a PUT URL
(S3 presigned, or this API's PUT /v1/uploads/{id} for the local backend); jobs then name the upload id.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError
from api.schemas import ErrorResponse, UploadCreate, UploadPublic, UploadPurpose
from api.submission import IdempotencyKey, check_idempotency_key, load_upload, request_hash
from workers import keys, redis_keys

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def purpose_limit(services: Services, purpose: UploadPurpose) -> int:
    s = services.settings
    return {
        UploadPurpose.image: s.max_upload_bytes,
        UploadPurpose.archive: s.max_request_bytes,
        UploadPurpose.dataset: s.max_dataset_bytes,
        UploadPurpose.model: s.max_model_bytes,
        UploadPurpose.video: s.max_video_bytes,
    }[purpose]


def _public(services: Services, request: Request, upload_id: str, record: dict) -> UploadPublic:
    key = keys.upload(record["owner"], upload_id)
    ctype = record.get("content_type") or None
    size = int(record["size"])
    url = services.store.presign_put(
        key, services.settings.presign_expiry_seconds, content_type=ctype, content_length=size
    )
    headers = {"Content-Type": ctype} if ctype else {}
    if url is None:
        base = services.settings.public_base_url or str(request.base_url).rstrip("/")
        url = f"{base}/v1/uploads/{upload_id}"
        headers["Authorization"] = "Bearer <your API key>"
    return UploadPublic(
        id=upload_id,
        purpose=UploadPurpose(record["purpose"]),
        size=size,
        url=url,
        headers=headers,
        expires_at=float(record["created_at"]) + services.settings.presign_expiry_seconds,
        received=services.store.exists(key),
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadPublic,
    responses={
        413: {"model": ErrorResponse, "description": "size above the limit of the purpose"},
        409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another body"},
        422: {
            "model": ErrorResponse,
            "description": "a bad field, a body that is not JSON, or an empty Idempotency-Key",
        },
    },
    summary="Start a direct upload; PUT the bytes to the returned url",
)
def create_upload(
    body: UploadCreate,
    request: Request,
    tenant: Tenant,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> UploadPublic:
    limit = purpose_limit(services, body.purpose)
    if body.size > limit:
        raise ApiError(
            413,
            "upload_too_large",
            f"size {body.size} is above the {limit}-byte limit for a {body.purpose.value}",
        )
    idem = check_idempotency_key(idempotency_key)
    digest = request_hash(body.model_dump(mode="json"))
    upload_id = uuid.uuid4().hex
    if idem is not None:
        # Idempotency keys are client text; the Redis key name uses their hash.
        slot = redis_keys.upload_idempotency(tenant, request_hash({"key": idem}))
        entry = json.dumps({"id": upload_id, "hash": digest})
        if not services.redis.set(slot, entry, nx=True, ex=services.settings.idempotency_ttl_seconds):
            previous = json.loads(services.redis.get(slot) or "{}")
            if previous.get("hash") != digest:
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    f"Idempotency-Key {idem!r} was already used for upload {previous.get('id')} with a different "
                    "body; reuse a key only to retry the identical request",
                )
            return _public(services, request, previous["id"], load_upload(services, tenant, previous["id"]))
    record = {
        "owner": tenant,
        "purpose": body.purpose.value,
        "size": str(body.size),
        "filename": body.filename or "",
        "content_type": body.content_type or "",
        "created_at": f"{time.time():.3f}",
    }
    # redis-py types `mapping` with an invariant key union that a dict of str keys does not match.
    services.redis.hset(redis_keys.upload(upload_id), mapping=record)  # type: ignore[arg-type]
    services.redis.expire(redis_keys.upload(upload_id), services.settings.job_ttl_seconds)
    return _public(services, request, upload_id, record)


@router.get("/{upload_id}", response_model=UploadPublic, responses={404: {"model": ErrorResponse}})
def get_upload(upload_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> UploadPublic:
    return _public(services, request, upload_id, load_upload(services, tenant, upload_id))


@router.delete(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"model": ErrorResponse}},
    summary="Delete a direct upload: its bytes and its record (a queued job that reads it then fails input_missing)",
)
def delete_upload(upload_id: str, tenant: Tenant, services: ServicesDep) -> Response:
    load_upload(services, tenant, upload_id)  # 404 for others' or unknown ids
    services.store.delete(keys.upload(tenant, upload_id))
    services.redis.delete(redis_keys.upload(upload_id))
    logger.info("upload %s of %s deleted", upload_id, tenant)
    return Response(status_code=204)


@router.put(
    "/{upload_id}",
    response_model=UploadPublic,
    responses={
        404: {"model": ErrorResponse},
        413: {"model": ErrorResponse, "description": "more bytes arrived than the upload declared"},
        422: {
            "model": ErrorResponse,
            "description": "upload_size_mismatch: fewer bytes arrived than the upload declared",
        },
    },
    summary="Receive the bytes of a direct upload (local storage backend only; S3 uses the presigned URL)",
)
async def put_upload(upload_id: str, request: Request, tenant: Tenant, services: ServicesDep) -> UploadPublic:
    record = await run_in_threadpool(load_upload, services, tenant, upload_id)
    declared = int(record["size"])
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > declared:
            raise ApiError(
                413,
                "upload_too_large",
                f"upload {upload_id} declared {declared} bytes; more than that arrived",
            )
        chunks.append(chunk)
    if received != declared:
        raise ApiError(
            422,
            "upload_size_mismatch",
            f"upload {upload_id} declared {declared} bytes but {received} arrived",
        )
    key = keys.upload(tenant, upload_id)
    ctype = record.get("content_type") or None
    await run_in_threadpool(services.store.put_bytes, key, b"".join(chunks), ctype)
    logger.info("upload %s of %s received (%d bytes)", upload_id, tenant, received)
    return await run_in_threadpool(_public, services, request, upload_id, record)
