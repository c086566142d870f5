"""The ObjectStore interface both backends implement (keys are validated by workers.keys.validate_key)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from workers.exceptions import InvalidKey

_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/]')


class ObjectStore(ABC):
    """Flat key -> bytes storage. Writes are whole-object and atomic: a reader sees the old or the new object."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write `data` at `key`, replacing any previous object."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a whole object; NotFound if absent."""

    @abstractmethod
    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        """A stream of bytes [start, end) of the object (S3: one GET with a Range header, read as it arrives);
        close it when done. NotFound if absent. workers.storage.ranged builds a seekable file on it."""

    @abstractmethod
    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """Upload a local file (multipart above the backend's threshold)."""

    @abstractmethod
    def open_write(self, key: str, content_type: str | None = None) -> AbstractContextManager[BinaryIO]:
        """A writable stream (not seekable) whose bytes become the object at `key` when the block exits
        normally; an exception leaves no object. Local disk use stays bounded whatever the object's size (S3:
        multipart parts of the configured size, held in memory one at a time)."""

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> None:
        """Download to `path` (written via a temporary file, so a failed download leaves nothing behind)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes; NotFound if absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; deleting a missing key is not an error (retries repeat deletes)."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (plain string prefix, as in S3), sorted."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`, which must end in '/' so 'outputs/j1' cannot take 'outputs/j10'."""
        if not prefix.endswith("/") or prefix == "/":
            raise InvalidKey(f"delete_prefix needs a folder prefix ending in '/', got {prefix!r}")
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    @abstractmethod
    def presign_get(self, key: str, expires: int, filename: str | None = None) -> str | None:
        """A time-limited download URL, or None when the backend has none (the API then streams the bytes).

        `filename` asks the browser to save the object under that name (Content-Disposition: attachment).
        """

    @abstractmethod
    def presign_put(
        self, key: str, expires: int, content_type: str | None = None, content_length: int | None = None
    ) -> str | None:
        """A time-limited upload URL for a client's direct PUT, or None when the backend has none.

        With `content_length` the signature covers the Content-Length header: the storage itself refuses a PUT
        of any other size, so a client cannot store more than it declared.
        """

    @abstractmethod
    def ping(self, timeout_seconds: float | None = None) -> None:
        """Raise StorageError if the store cannot be reached (readiness probes) within `timeout_seconds` (one
        try, no retries); None: the backend's usual timeouts and retries."""


def content_disposition(filename: str) -> str:
    """An attachment header safe for any filename: ASCII fallback plus RFC 6266 filename* in UTF-8."""
    ascii_name = (
        _UNSAFE_FILENAME.sub("_", filename).encode("ascii", "replace").decode("ascii").replace("?", "_")
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
