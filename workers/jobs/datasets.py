"""Safe unpacking of uploaded training datasets (zip archives of photos and of style images).

Members are never written under their own names: each image gets a fresh name from its index, so no
member can escape the folder ('../', absolute paths, links). Only images count; sizes and counts are capped.
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workers.jobs import JobInputError

logger = logging.getLogger(__name__)

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class DatasetLimits:
    """Caps for one archive; defaults fit AnimeGAN datasets (a few thousand 256 px images)."""

    max_images: int = 20_000  # members that are images
    max_member_bytes: int = 50 * 1024 * 1024  # one uncompressed image
    max_total_bytes: int = 4 * 1024 * 1024 * 1024  # all uncompressed images together (zip bombs)
    min_images: int = 1


def unpack_images(
    archive: Path, out_dir: Path, what: str, limits: DatasetLimits | None = None, keep_names: bool = False
) -> int:
    """Extract the images of `archive` into `out_dir` as 000000.<ext>, ...; return how many.

    Non-image members (folders, __MACOSX, text files) are skipped; unsafe names are refused outright, since
    an archive that tries path traversal is not an honest dataset. Raises JobInputError("bad_dataset").
    keep_names (paired data, matched by name): each image is written under its own base name instead, made
    safe (letters, digits, '.', '-', '_'); two members with one base name are refused.
    """
    limits = limits or DatasetLimits()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise JobInputError("bad_dataset", f"{what} archive is not a readable zip file: {exc}") from exc
    count = 0
    total = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            path = PurePosixPath(name.replace("\\", "/"))
            # Drive letters ("C:") count as absolute too: the archive may come from Windows.
            if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
                raise JobInputError(
                    "bad_dataset", f"{what} archive member {name!r} has an unsafe path; refused"
                )
            if info.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES or _is_hidden(path):
                continue
            if info.file_size > limits.max_member_bytes:
                raise JobInputError(
                    "bad_dataset",
                    f"{what} archive member {name!r} is {info.file_size} bytes uncompressed; "
                    f"the limit is {limits.max_member_bytes}",
                )
            total += info.file_size
            count += 1
            if count > limits.max_images or total > limits.max_total_bytes:
                raise JobInputError(
                    "bad_dataset",
                    f"{what} archive holds more than {limits.max_images} images or "
                    f"{limits.max_total_bytes} uncompressed bytes; split or shrink the dataset",
                )
            target = out_dir / (
                _safe_base_name(path) if keep_names else f"{count - 1:06d}{path.suffix.lower()}"
            )
            if keep_names and target.exists():
                raise JobInputError(
                    "bad_dataset", f"{what} archive has two images named {path.name!r}; names must be unique"
                )
            with zf.open(info) as src, target.open("wb") as dst:
                # The header's file_size can lie; copy at most the limit plus one byte and check.
                shutil.copyfileobj(_Capped(src, limits.max_member_bytes + 1), dst)
            if target.stat().st_size > limits.max_member_bytes:
                raise JobInputError(
                    "bad_dataset", f"{what} archive member {name!r} expands beyond its declared size"
                )
    if count < limits.min_images:
        raise JobInputError(
            "bad_dataset",
            f"{what} archive holds no images (.jpg, .jpeg, .png, .webp, .bmp); nothing to train on",
        )
    logger.info("unpacked %d %s images into %s", count, what, out_dir)
    return count


def _safe_base_name(path: PurePosixPath) -> str:
    """The member's own file name with anything but [A-Za-z0-9._-] replaced: never a path, never hidden."""
    stem = _UNSAFE_CHARS.sub("_", path.stem) or "image"
    return f"{stem}{path.suffix.lower()}"


def _is_hidden(path: PurePosixPath) -> bool:
    """macOS resource forks (__MACOSX/, ._name) and dot files are archive noise, not images."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


class _Capped:
    """A read-only file wrapper that stops after `limit` bytes."""

    def __init__(self, raw: object, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._raw.read(size)  # type: ignore[attr-defined]
        self._left -= len(data)
        return data
