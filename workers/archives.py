"""The one rule for the members of an uploaded zip: which are images, which are noise (folders, dot files,
macOS resource forks), which are other files, and which no honest archive holds (a path that escapes the
folder, a link named like an image). The API's checks and the worker's extraction both read it, so a zip the
API accepted is one the worker unpacks the same way. Zipfile and the media table only: no torch, no Pillow.
"""

from __future__ import annotations

import stat
import zipfile
from enum import StrEnum
from pathlib import PurePosixPath

from workers.media import IMAGE_SUFFIXES

ZIP_MAGIC = b"PK\x03\x04"


class MemberRefused(ValueError):
    """A member that makes the whole archive unacceptable; the message names it."""


class MemberKind(StrEnum):
    image = "image"  # an image file by its suffix: the archive's content
    other = "other"  # a file of another kind (a batch refuses it, a dataset skips it)
    noise = "noise"  # a folder entry, a dot file, __MACOSX/: never content, always skipped


def is_zip(data: bytes) -> bool:
    return data[:4] == ZIP_MAGIC


def member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's path with Windows separators normalised (the archive may come from Windows)."""
    return PurePosixPath(info.filename.replace("\\", "/"))


def member_kind(info: zipfile.ZipInfo) -> MemberKind:
    """What `info` is; MemberRefused for an unsafe path or a link named like an image."""
    path = member_path(info)
    # Drive letters ("C:") count as absolute too.
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise MemberRefused(f"member {info.filename!r} has an unsafe path; refused")
    if info.is_dir() or any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return MemberKind.noise
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return MemberKind.other
    mode = info.external_attr >> 16
    if mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
        # A symbolic link (or device) named like an image holds a path, not pixels.
        raise MemberRefused(f"member {info.filename!r} is a link, not an image file; refused")
    return MemberKind.image
