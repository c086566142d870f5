"""POST /v1/batches: many images with one model (several files, a zip, or direct-upload ids) -> one batch job
that the contracts fan out into chunk tasks of `batch_chunk_size` images each.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status

from api.deps import Services, ServicesDep, Tenant
from api.errors import ApiError
from api.images import (
    ImageInfo,
    inspect_image,
    open_checked_archive,
    read_member,
    safe_name,
    scan_image_archive,
)
from api.job_options import JobOptionsDep, WaitingCreateRoute
from api.json_bodies import external_url, is_external
from api.schemas import BatchForm, JobPublic, UploadPurpose
from api.submission import (
    CREATE_RESPONSES,
    IdempotencyKey,
    NewJob,
    accepted,
    check_idempotency_key,
    check_input_url,
    check_model,
    check_webhook_url,
    read_upload_file,
    refuse_url_input,
    request_hash,
    resolve_upload,
    submit_job,
    with_fetch,
)
from workers import keys
from workers.archives import ZIP_MAGIC, ArchiveLimits, ZipSource, is_zip
from workers.contracts.batch import BATCH, BatchSpec, chunk_messages
from workers.contracts.fetch import RemoteInput
from workers.contracts.images import ImageSpec
from workers.jobstore import new_job_id
from workers.storage.ranged import RangedObject

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["batches"], route_class=WaitingCreateRoute)


@dataclass(frozen=True)
class ArchiveEntry:
    """Where an archive's image lies: the archive stays open while the route runs and the entry is read again
    when it is stored, so the request never holds more than one archive image in memory."""

    zf: zipfile.ZipFile
    member: zipfile.ZipInfo
    archive: str  # the archive's name, for errors


@dataclass(frozen=True)
class Item:
    """One image of the request, checked. Exactly one of upload_key, data, entry and url says where its bytes are."""

    name: str  # display name
    info: ImageInfo | None  # header facts; None for an image by URL (its fetching worker checks it)
    sha256: bytes  # of the bytes checked (the request hash; an archive entry is compared when read again)
    upload_key: str | None = None  # a direct upload that is this one image: the job reads it in place
    data: bytes | None = None  # a file part's bytes, stored under the job's inputs
    entry: ArchiveEntry | None = None  # an archive's image, stored under the job's inputs
    url: str | None = None  # an image by URL (api.json_bodies), fetched into the job's inputs before it runs

    @property
    def ext(self) -> str:
        return self.info.ext if self.info else "img"

    def stored_bytes(self) -> bytes:
        """The bytes to store under the job's inputs (not for a direct upload, read where it lies)."""
        if self.data is not None:
            return self.data
        assert self.entry is not None  # the only other case that stores anything
        data = read_member(self.entry.zf, self.entry.member, self.entry.archive)
        if hashlib.sha256(data).digest() != self.sha256:
            raise ApiError(
                409,
                "upload_changed",
                f"{self.entry.archive}: entry {self.entry.member.filename!r} changed while the batch was "
                "created (an upload sent again?); submit the batch again",
            )
        return data


def _single(name: str, data: bytes, max_pixels: int, upload_key: str | None = None) -> Item:
    info = inspect_image(data, name, max_pixels)
    held = None if upload_key else data
    return Item(name, info, hashlib.sha256(data).digest(), upload_key=upload_key, data=held)


def _collect(
    services: Services,
    tenant: str,
    files: list[UploadFile],
    archive: UploadFile | None,
    upload_ids: list[str],
    stack: ExitStack,
) -> list[Item]:
    """Every image of the request, in order: files, then the archive's images, then the uploads'. A zip is
    checked by the one zip checker (workers.archives); a direct upload's zip is read by ranged GETs, never
    downloaded whole."""
    s = services.settings
    items: list[Item] = []

    def add_archive(source: ZipSource, name: str) -> None:
        room = max(s.max_batch_items - len(items), 0)
        limits = ArchiveLimits(
            max_images=room, max_member_bytes=s.max_upload_bytes, max_total_bytes=s.max_archive_bytes,
            refuse_others=True,
        )  # fmt: skip
        zf, members = stack.enter_context(open_checked_archive(source, name, limits))
        for image in scan_image_archive(zf, members, name, s.max_image_pixels):
            items.append(
                Item(image.name, image.info, image.sha256, entry=ArchiveEntry(zf, image.member, name))
            )

    for i, upload in enumerate(files):
        if is_external(upload):
            url = check_input_url(services, external_url(upload, f"files[{i}]"), f"files[{i}]")
            items.append(Item(url, None, hashlib.sha256(url.encode()).digest(), url=url))
            continue
        name = safe_name(upload.filename or "", f"image-{i}")
        items.append(_single(name, read_upload_file(upload, s.max_upload_bytes), s.max_image_pixels))
    if archive is not None and is_external(archive):
        refuse_url_input("archive")
    if archive is not None:
        archive.file.seek(0)
        add_archive(archive.file, safe_name(archive.filename or "", "archive"))
    for upload_id in upload_ids:
        key, size = resolve_upload(services, tenant, upload_id, {UploadPurpose.image, UploadPurpose.archive})
        with closing(services.store.open_range(key, 0, min(size, len(ZIP_MAGIC)))) as head:
            magic = head.read()
        if is_zip(magic):
            add_archive(stack.enter_context(closing(RangedObject(services.store, key, size))), upload_id)
        elif size > s.max_upload_bytes:
            raise ApiError(
                413,
                "upload_too_large",
                f"{upload_id}: {size} bytes is above the {s.max_upload_bytes}-byte limit per image",
            )
        else:
            items.append(
                _single(upload_id, services.store.get_bytes(key), s.max_image_pixels, upload_key=key)
            )
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
    "(images or zips); or a JSON body of the same fields whose `files` is a list of data: URIs and https:// URLs "
    "(fetched by a worker). Progress counts images done of total; GET /v1/jobs/{id}/results/{index} returns each "
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
    with ExitStack() as stack:
        items = _collect(services, tenant, files or [], archive, form.upload_ids, stack)
        spec = BatchSpec(
            **form.model_dump(include=set(ImageSpec.model_fields)), filenames=[item.name for item in items]
        )
        job_id = new_job_id()
        input_keys = [item.upload_key or keys.input(job_id, i, item.ext) for i, item in enumerate(items)]
        fetched = [
            RemoteInput(url=item.url, key=key, field=f"files[{i}]", max_bytes=settings.max_upload_bytes)
            for i, (item, key) in enumerate(zip(items, input_keys, strict=True))
            if item.url is not None
        ]

        def write_inputs() -> None:
            for item, key in zip(items, input_keys, strict=True):
                if item.info is not None and item.upload_key is None:
                    services.store.put_bytes(key, item.stored_bytes(), content_type=item.info.content_type)

        job = NewJob(
            kind=BATCH,
            spec=spec,
            total=len(items),
            digest=request_hash(
                {"kind": "batch", **form.model_dump(mode="json")}, digests=[item.sha256 for item in items]
            ),
            write_inputs=write_inputs,
            messages=lambda job_id: with_fetch(
                job_id, fetched, chunk_messages(job_id, input_keys, settings.batch_chunk_size)
            ),
            job_id=job_id,
        )
        record, created = submit_job(services, tenant, job, idem, webhook, options.with_form(form))
    logger.info("batch job %s for %s: %d images", record.id, tenant, len(items))
    return accepted(response, request, services, record, created)
