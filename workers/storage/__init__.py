"""Object storage: one ObjectStore interface, LocalStore (file://) and S3Store (s3://), chosen by open_store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.exceptions import InvalidKey, NotFound, StorageError
from workers.storage.base import ObjectStore
from workers.storage.local import LocalStore

if TYPE_CHECKING:
    from workers.settings import ServiceSettings
    from workers.storage.s3 import S3Store

__all__ = ["InvalidKey", "LocalStore", "NotFound", "ObjectStore", "S3Store", "StorageError", "open_store"]


def open_store(settings: ServiceSettings) -> ObjectStore:
    """The backend named by settings.storage_url; no connection is made until the first call."""
    if settings.storage_scheme == "s3":
        from workers.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.storage_root)


def __getattr__(name: str) -> object:
    # S3Store pulls in boto3 (~0.3 s); import it only when asked for.
    if name == "S3Store":
        from workers.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
