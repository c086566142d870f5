"""Which object storage a job's inputs went to: the API stamps each job with the id in its storage's marker object,
and a worker whose own storage holds another id (or none) fails the job naming the misconfiguration, instead of
a puzzling `input_missing` for every input (two deployments on one Redis with one namespace, or an API and its
workers pointed at different buckets or folders)."""

from __future__ import annotations

import logging
import uuid

from workers.storage import NotFound, ObjectStore

logger = logging.getLogger(__name__)

MARKER_KEY = "deployment/storage-id"  # a small object at the storage root; never a job's key


def storage_id(store: ObjectStore, create: bool) -> str | None:
    """The id in `store`'s marker object; with `create` (the API at start), a new one is written if there is none."""
    try:
        return store.get_bytes(MARKER_KEY).decode().strip() or None
    except NotFound:
        if not create:
            return None
    new = uuid.uuid4().hex[:16]
    store.put_bytes(MARKER_KEY, new.encode(), content_type="text/plain")
    logger.info("storage marker %s written (%s)", new, MARKER_KEY)
    return new


def mismatch_message(job_storage: str, worker_storage: str | None, namespace: str) -> str:
    """What a tenant reads when a worker cannot serve a job: the likely misconfiguration, no paths or endpoints."""
    mine = (
        f"storage {worker_storage}"
        if worker_storage
        else "a storage no API of this deployment has written to"
    )
    return (
        f"this job's inputs went to storage {job_storage}, but the worker that took it reads {mine}: the API and "
        "the workers must share ANIMEGAN_STORAGE_URL, and deployments that share a Redis need their own "
        f"ANIMEGAN_NAMESPACE (this one's: {namespace or 'none'}); an operator must fix the configuration"
    )
