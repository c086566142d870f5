"""Atomic file writes: write beside the target, then one rename, so a reader (or a crash) sees the old file or
the whole new one, never half of it. Standard library only, so light modules (storage) can use it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# mkstemp makes its file 0600; the finished file gets the mode an ordinary open() would give it (0666 less the
# umask), so a model or checkpoint written here stays readable by the other users open() would have let read it.
# Read once at import (setting the umask to read it is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[Path]:
    """A temporary file name in `path`'s folder to write to (for writers that want a name); on a clean exit it
    replaces `path`, on an error it is removed. fsync: flush it to disk first (data that must survive a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the rename stays on one filesystem), a dot name (so listings of the folder skip it).
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces `path` when the block ends without an error."""
    with atomic_path(path, fsync) as tmp, open(tmp, "wb") as handle:
        yield handle
