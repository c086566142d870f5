"""A stored object as a seekable, read-only file made of ranged GETs, so zipfile can check a direct upload where
it lies: the end record and central directory come from the tail, members from the ranges they occupy, and
neither memory nor local disk ever holds more than one read's bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any, BinaryIO

from workers.storage.base import ObjectStore

logger = logging.getLogger(__name__)

MIN_WINDOW = (
    256 * 1024
)  # a GET after a seek asks for this much; each sequential GET after it for twice as much
MAX_WINDOW = 32 * 1024 * 1024
SKIP_LIMIT = 64 * 1024  # a forward seek of at most this is read through (a data descriptor between members)
TAIL_BYTES = 128 * 1024  # the end record, a comment and a small directory: fetched once, kept in memory


class RangedObject(io.RawIOBase):
    """Read `key` (of `size` bytes) through store.open_range. Reads that follow each other share one open GET
    whose range doubles up to MAX_WINDOW; a seek elsewhere closes it and the next read opens another.

    sha256() is the object's digest: bytes read in order from offset 0 are hashed as they pass (a check that
    reads the members front to back has read almost all of them), and the rest are fetched to finish it.
    `gets` and `bytes_read` count the GETs and the bytes they carried (tests bound them).
    """

    def __init__(self, store: ObjectStore, key: str, size: int) -> None:
        super().__init__()
        self.store, self.key, self.size = store, key, size
        self.gets = 0
        self.bytes_read = 0
        self._pos = 0
        self._stream: BinaryIO | None = None
        self._stream_pos = 0  # offset of the open GET's next byte
        self._stream_end = 0  # end of its range
        self._window = MIN_WINDOW
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes [0, _hashed) are in _hash
        self._tail_start = max(0, size - TAIL_BYTES)
        self._tail: bytes | None = None  # bytes [_tail_start, size) once a read needed them

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:  # Any: the buffer protocol has no precise type here
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self._pos)
        done = 0
        while done < wanted:
            chunk = self._read_at(self._pos, wanted - done)
            if not chunk:
                raise OSError(f"{self.key}: storage ended the object at {self._pos} of {self.size} bytes")
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
            self._pos += len(chunk)
        return done

    def _read_at(self, pos: int, size: int) -> bytes:
        if pos >= self._tail_start and not (self._stream is not None and self._stream_pos == pos):
            return self._tail_bytes()[pos - self._tail_start : pos - self._tail_start + size]
        if self._stream is not None and self._stream_pos < pos <= self._stream_pos + SKIP_LIMIT:
            self._pass(pos - self._stream_pos)  # a small gap: reading through is cheaper than a new GET
        if self._stream is None or self._stream_pos != pos or self._stream_pos >= self._stream_end:
            sequential = self._stream is not None and self._stream_pos == pos
            self._open(pos, sequential)
        assert self._stream is not None  # opened just above
        data = self._stream.read(min(size, self._stream_end - self._stream_pos))
        self._advance(data)
        return data

    def _tail_bytes(self) -> bytes:
        if self._tail is None:
            with self.store.open_range(self.key, self._tail_start, self.size) as stream:
                self._tail = stream.read()
            self.gets += 1
            self.bytes_read += len(self._tail)
        return self._tail

    def _pass(self, count: int) -> None:
        while count > 0 and self._stream is not None:
            if self._stream_pos >= self._stream_end:
                self._open(self._stream_pos, sequential=True)
            data = self._stream.read(min(count, self._stream_end - self._stream_pos, 1 << 20))
            if not data:
                return
            self._advance(data)
            count -= len(data)

    def _advance(self, data: bytes) -> None:
        if self._stream_pos == self._hashed:
            self._hash.update(data)
            self._hashed += len(data)
        self._stream_pos += len(data)
        self.bytes_read += len(data)

    def _open(self, pos: int, sequential: bool) -> None:
        self._close_stream()
        self._window = min(2 * self._window, MAX_WINDOW) if sequential else MIN_WINDOW
        end = min(self.size, pos + self._window)
        self._stream = self.store.open_range(self.key, pos, end)
        self._stream_pos, self._stream_end = pos, end
        self.gets += 1

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def sha256(self) -> bytes:
        """The whole object's sha256, fetching the bytes no read has passed in order from offset 0."""
        if self._hashed < self.size:
            pos = self._pos
            self.seek(self._hashed)
            while self._hashed < self.size:
                if self._hashed >= self._tail_start and self._tail is not None:
                    self._hash.update(self._tail[self._hashed - self._tail_start :])
                    self._hashed = self.size
                    break
                self._read_at(self._hashed, min(self.size - self._hashed, 1 << 20))
            self.seek(pos)
        return self._hash.digest()

    def close(self) -> None:
        self._close_stream()
        super().close()
