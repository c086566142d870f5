"""LocalStore: the file:// backend, a folder on this machine (the embedded default and local development)."""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from animegan.atomic import atomic_write
from workers.exceptions import InvalidKey, NotFound, StorageError
from workers.keys import validate_key, validate_prefix
from workers.storage.base import ObjectStore

logger = logging.getLogger(__name__)

# Temporary files (animegan.atomic) start with '.', which no valid key segment does, so listings never show
# half-written objects.


class LocalStore(ObjectStore):
    """Objects are files under `root`; writes go to a temporary file in the same folder, then os.replace."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        # validate_key already refuses '..'; this also catches a symlink inside the root pointing outside it.
        if not path.is_relative_to(self.root):
            raise InvalidKey(f"storage key {key!r} resolves to {path}, outside the store root {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"put_bytes({key!r}) needs bytes, got {type(data).__name__}")
        with atomic_write(self._path(key), fsync=True) as handle:
            handle.write(data)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object at key {key!r} in {self.root}") from None

    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        try:
            handle = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object at key {key!r} in {self.root}") from None
        handle.seek(start)
        return cast(BinaryIO, _Limited(handle, end - start))  # a RawIOBase, which typeshed keeps apart

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"put_file({key!r}): local file {source} does not exist")
        with source.open("rb") as src, atomic_write(self._path(key), fsync=True) as handle:
            shutil.copyfileobj(src, handle, 1024 * 1024)

    @contextmanager
    def open_write(self, key: str, content_type: str | None = None) -> Iterator[BinaryIO]:
        # The temporary file sits beside the object, in the store's own folder: no scratch disk elsewhere.
        with atomic_write(self._path(key), fsync=True) as handle:
            yield handle

    def get_file(self, key: str, path: str | Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFound(f"no object at key {key!r} in {self.root}")
        with source.open("rb") as src, atomic_write(path) as handle:
            shutil.copyfileobj(src, handle, 1024 * 1024)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no object at key {key!r} in {self.root}")
        return path.stat().st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, folder: Path) -> None:
        # Keep the tree tidy so finished jobs leave no empty folders behind; stop at the root.
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        # Walk only the deepest folder the prefix fully names; the rest of the prefix filters names.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def presign_get(self, key: str, expires: int, filename: str | None = None) -> str | None:
        validate_key(key)
        return None

    def presign_put(
        self, key: str, expires: int, content_type: str | None = None, content_length: int | None = None
    ) -> str | None:
        validate_key(key)
        return None

    def ping(self, timeout_seconds: float | None = None) -> None:
        # A local folder answers at once or not at all; there is no network timeout to shorten.
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage folder {self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage folder {self.root} is not writable by this process")


class _Limited(io.RawIOBase):
    """The next `left` bytes of an open file, then end of file; closing it closes the file."""

    def __init__(self, handle: BinaryIO, left: int) -> None:
        super().__init__()
        self._handle, self._left = handle, max(0, left)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()
        super().close()
