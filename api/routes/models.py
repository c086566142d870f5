"""Models: list the usable ones (public and own), upload a generator, delete an own one.

Uploads are checked here without torch: a .safetensors export by its JSON header (format, config, tensor
table consistent with the file size); a .pt of the public AnimeGANv2 PyTorch port (bryandlee) by its zip
layout and the state-dict key names in its pickle, read with pickletools (never unpickled); an ONNX generator
by its declarations (one float32 NCHW or NHWC image input, opsets onnxruntime runs), with its weights skipped
(api/onnx_models.py). Each is
registered at once; a worker loads and fully checks it on first use (a file it cannot load fails that job
with a clear error).
"""

from __future__ import annotations

import io
import json
import logging
import pickletools
import re
import struct
import zipfile
import zlib
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from api.deps import ServicesDep, Tenant
from api.errors import ApiError, not_found
from api.onnx_models import check_onnx
from api.schemas import ErrorResponse, ModelList, ModelPublic, UploadPurpose
from api.submission import (
    IdempotencyKey,
    check_idempotency_key,
    check_model_name,
    read_upload_file,
    request_hash,
    resolve_upload,
)
from workers import keys, redis_keys
from workers.archives import is_zip
from workers.exceptions import ModelExists
from workers.registry import ModelInfo

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/models", tags=["models"])

EXPORT_FORMAT = "animegan-generator"  # animegan.weights.EXPORT_FORMAT, restated to keep torch out of the API
SAFETENSORS_DTYPES = {"F32", "F16", "BF16", "F64"}
BRYANDLEE_KEY = re.compile(r"^(block_[a-e]|out_layer)\.[0-9a-z_.]+\.(weight|bias)$")
BRYANDLEE_TENSORS = 77  # tensors in the port's generator state dict (spec: 77 tensors, 2,143,552 params)
# The port's data.pkl (77 names, shapes and storage ids) is about 6 KB; one far larger is a zip bomb, and reading
# it whole would hold its inflated size in the API's memory.
MAX_PICKLE_BYTES = 1024 * 1024


def _public(info: ModelInfo) -> ModelPublic:
    return ModelPublic(
        name=info.name,
        public=info.public,
        source=info.source,
        config=dict(info.config),
        created_at=info.created_at,
        size=info.size,
        description=info.metadata.get("description"),
    )


def check_safetensors(data: bytes, name: str) -> dict:
    """Validate an export's header; return its generator config. 415/422 name what is wrong."""
    if len(data) < 10:
        raise ApiError(415, "not_a_model", f"{name}: {len(data)} bytes is too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if not 2 <= header_len <= len(data) - 8:
        raise ApiError(
            415, "not_a_model", f"{name}: header length {header_len} does not fit a {len(data)}-byte file"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(415, "not_a_model", f"{name}: the safetensors header is not JSON ({exc})") from exc
    meta = header.pop("__metadata__", None) or {}
    if meta.get("format") != EXPORT_FORMAT:
        raise ApiError(
            422,
            "not_an_animegan_export",
            f"{name}: header format is {meta.get('format')!r}, not {EXPORT_FORMAT!r}; export with "
            "`animegan import-weights` (or a training run) first",
        )
    try:
        config = json.loads(meta["config"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ApiError(
            422, "invalid_model", f"{name}: the export has no readable generator config ({exc})"
        ) from exc
    if not isinstance(config, dict) or config.get("arch") not in ("v1", "v2"):
        raise ApiError(422, "invalid_model", f"{name}: config arch must be v1 or v2, got {config!r:.120}")
    data_len, end = len(data) - 8 - header_len, 0
    for tensor, entry in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]):
        offsets = entry.get("data_offsets") or [-1, -1]
        if entry.get("dtype") not in SAFETENSORS_DTYPES or offsets[0] != end or offsets[1] < offsets[0]:
            raise ApiError(
                422, "invalid_model", f"{name}: tensor {tensor!r} has a bad dtype or data offsets ({entry})"
            )
        end = offsets[1]
    if not header or end != data_len:
        raise ApiError(
            422,
            "invalid_model",
            f"{name}: tensors cover {end} bytes but the file holds {data_len} after the header",
        )
    return config


def check_bryandlee(data: bytes, name: str) -> dict:
    """Check a torch.save zip holds a state dict with the port's 77 key names, without unpickling it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            pickles = [i for i in zf.infolist() if i.filename.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ApiError(
                    415, "not_a_model", f"{name}: not a torch.save file (no single data.pkl inside)"
                )
            if pickles[0].file_size > MAX_PICKLE_BYTES:
                raise ApiError(
                    422,
                    "decompression_bomb",
                    f"{name}: data.pkl inflates to {pickles[0].file_size} bytes, above the "
                    f"{MAX_PICKLE_BYTES}-byte limit for a generator's state dict; refused",
                )
            with zf.open(pickles[0]) as member:
                # The header's size may lie: read one byte past the limit and check what really came out.
                pickle = member.read(MAX_PICKLE_BYTES + 1)
            if len(pickle) > MAX_PICKLE_BYTES:
                raise ApiError(
                    422,
                    "decompression_bomb",
                    f"{name}: data.pkl inflates beyond the {MAX_PICKLE_BYTES}-byte limit; refused",
                )
            strings = {arg for op, arg, _ in pickletools.genops(pickle) if isinstance(arg, str)}
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ApiError(415, "not_a_model", f"{name}: a .pt must be a torch.save zip archive ({exc})") from exc
    except ValueError as exc:  # pickletools on a damaged pickle
        raise ApiError(422, "invalid_model", f"{name}: the pickle inside is damaged ({exc})") from exc
    found = {s for s in strings if BRYANDLEE_KEY.match(s)}
    if len(found) != BRYANDLEE_TENSORS:
        raise ApiError(
            422,
            "invalid_model",
            f"{name}: holds {len(found)} tensors named like the AnimeGANv2 port's generator, expected "
            f"{BRYANDLEE_TENSORS}; only that port's .pt files (or our .safetensors exports) are accepted",
        )
    return {"arch": "v2", "upsample": "align_corners", "source_format": "bryandlee .pt"}


def looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length, then the header's JSON object."""
    return len(data) >= 9 and data[8:9] == b"{"


@router.get("", response_model=ModelList, summary="Models you can use: public ones and your own")
def list_models(tenant: Tenant, services: ServicesDep) -> ModelList:
    return ModelList(items=[_public(info) for info in services.registry.list(tenant)])


@router.get("/{name}", response_model=ModelPublic, responses={404: {"model": ErrorResponse}})
def get_model(name: str, tenant: Tenant, services: ServicesDep) -> ModelPublic:
    info = services.registry.get(name, tenant)
    if info is None:
        raise not_found("model", name)
    return _public(info)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelPublic,
    responses={409: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}},
    summary="Upload a generator (.safetensors export, AnimeGANv2 port .pt, or ONNX graph) as a new private model",
)
def create_model(
    request: Request,
    response: Response,
    name: Annotated[str, Form(min_length=1, max_length=64, description="name of the new model")],
    tenant: Tenant,
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="the weights file")] = None,
    upload_id: Annotated[
        str | None, Form(max_length=64, description="a direct upload instead of file")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> ModelPublic:
    if (file is None) == (upload_id is None):
        raise ApiError(422, "invalid_parameters", "file, upload_id: send exactly one of them")
    if file is not None:
        data = read_upload_file(file, services.settings.max_model_bytes)
        label = file.filename or "file"
    elif upload_id is not None:
        key, _ = resolve_upload(services, tenant, upload_id, {UploadPurpose.model})
        data, label = services.store.get_bytes(key), upload_id
    idem = check_idempotency_key(idempotency_key)
    digest = request_hash({"name": name}, [data])
    slot = redis_keys.model_idempotency(tenant, request_hash({"key": idem})) if idem else None
    if slot is not None and (previous := services.redis.get(slot)) is not None:
        if previous != digest:
            raise ApiError(
                409,
                "idempotency_conflict",
                f"Idempotency-Key {idem!r} was already used to upload another model",
            )
        info = services.registry.get(name, tenant)
        if info is not None:
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
            return _public(info)
    check_model_name(services, tenant, name)
    if is_zip(data):
        config, ext = check_bryandlee(data, label), "pt"
    elif looks_like_safetensors(data):
        config, ext = check_safetensors(data, label), "safetensors"
    else:
        config, ext = check_onnx(data, label), "onnx"
    # The key's suffix tells the worker how to load the file (workers.jobs.models).
    key = (
        keys.model(name, tenant)
        if ext == "safetensors"
        else keys.model_prefix(name, tenant) + f"generator.{ext}"
    )
    services.store.put_bytes(key, data, content_type="application/octet-stream")
    try:
        info = services.registry.register(name, tenant, key, config, source="uploaded", size=len(data))
    except ModelExists as exc:  # lost a race with a concurrent upload of the same name
        raise ApiError(409, "model_exists", f"name: {exc}") from exc
    if slot is not None:
        services.redis.set(slot, digest, ex=services.settings.idempotency_ttl_seconds)
    logger.info("model %s uploaded by %s (%s, %d bytes)", name, tenant, ext, len(data))
    response.headers["Location"] = f"/v1/models/{name}"
    return _public(info)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorResponse}},
    response_class=Response,
)
def delete_model(name: str, tenant: Tenant, services: ServicesDep) -> Response:
    info = services.registry.get(name, tenant)
    if info is None or info.public:
        # Public models are not the caller's to delete; answered like a missing one.
        raise not_found("model", name)
    services.registry.delete(name, tenant)
    services.store.delete_prefix(keys.model_prefix(name, tenant))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
