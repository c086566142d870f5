"""The one checker of uploaded zips: which members are images, which are noise (folders, dot files, macOS
resource forks), which are other files, and which no honest archive holds (a path that escapes the folder, a
link named like an image); the limits on entries, sizes and compression; each member's data against its CRC and
size. The API runs it at submit (on a ranged reader for a direct upload) and a worker again before extracting,
so a zip the API accepted is one the worker unpacks the same way. Zipfile and the media table only: no torch.
"""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from workers.media import IMAGE_SUFFIX_LIST, IMAGE_SUFFIXES

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


# The central directory is read into memory whole (zipfile) and every entry becomes an object: both are bounded
# before it is parsed, from the end record alone. Entries of any kind count (folders, __MACOSX, dot files).
MAX_ENTRIES = 50_000
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
# An entry that inflates more than this is treated as a zip bomb.
MAX_COMPRESSION_RATIO = 200
# End of central directory: signature, disk numbers, entries (this disk, total), size, offset, comment length.
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # just before the end record: where the zip64 end record lies
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")  # ..., entries, directory size, directory offset
_MAX_TAIL = _END_RECORD.size + 0xFFFF + _ZIP64_LOCATOR.size  # end record, longest comment, zip64 locator


class ArchiveRefused(ValueError):
    """An archive no service accepts; `code` and `status` are what the API answers, the message names the
    archive and the entry (a worker fails its job bad_dataset with the same message)."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps for one archive: the API checks them at submit, a worker again before it extracts."""

    max_images: int = 20_000  # image members (ANIMEGAN_MAX_DATASET_IMAGES; a batch: the items left)
    max_member_bytes: int = 50 * 1024 * 1024  # one image, uncompressed (as declared, and as it inflates)
    max_total_bytes: int = 4 * 1024 * 1024 * 1024  # all images together, uncompressed (zip bombs)
    max_entries: int = MAX_ENTRIES  # members of any kind, counted from the end record before parsing
    refuse_others: bool = False  # a batch refuses a non-image file; a dataset skips it


def _directory_bounds(fp: BinaryIO, name: str) -> tuple[int, int]:
    """(entries, directory bytes) from the archive's end record (zip64 included), reading only its tail."""
    size = fp.seek(0, io.SEEK_END)
    tail_start = max(0, size - _MAX_TAIL)
    fp.seek(tail_start)
    tail = fp.read(size - tail_start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise ArchiveRefused(
            "not_a_zip", f"{name}: not a readable zip file (no end of central directory)", 415
        )
    _, _, _, _, entries, directory_bytes, _, _ = _END_RECORD.unpack_from(tail, at)
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        _, _, record_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator)
        fp.seek(record_offset)
        record = fp.read(_ZIP64_END_RECORD.size)
        if len(record) < _ZIP64_END_RECORD.size or record[:4] != b"PK\x06\x06":
            raise ArchiveRefused("corrupt_archive", f"{name}: the zip64 end record is damaged; zip it again")
        entries, directory_bytes = _ZIP64_END_RECORD.unpack(record)[7:9]
    return entries, directory_bytes


# What open_archive reads: a local file, or a seekable binary file (a spooled form part, a ranged reader of a
# stored object: workers.storage.ranged.RangedObject, a RawIOBase, which typeshed does not count as BinaryIO).
ZipSource = Path | BinaryIO | io.RawIOBase


def open_archive(source: ZipSource, name: str, limits: ArchiveLimits) -> zipfile.ZipFile:
    """The zip at `source` (a local file, or any seekable file such as a ranged reader of a stored object),
    after checking from its end record that its directory is within the limits; ArchiveRefused otherwise."""
    try:
        if isinstance(source, Path):
            with source.open("rb") as fp:
                entries, directory_bytes = _directory_bounds(fp, name)
        else:
            entries, directory_bytes = _directory_bounds(cast(BinaryIO, source), name)
        if entries > limits.max_entries or directory_bytes > MAX_DIRECTORY_BYTES:
            raise ArchiveRefused(
                "too_many_entries",
                f"{name}: {entries} entries ({directory_bytes} bytes of directory) is above the limit of "
                f"{limits.max_entries} entries per archive; split it",
            )
        return zipfile.ZipFile(source if isinstance(source, Path) else cast(BinaryIO, source))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused("not_a_zip", f"{name}: not a readable zip file ({exc})", 415) from exc


def image_members(zf: zipfile.ZipFile, name: str, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The image members of `zf` in the order they lie in the file, every directory-level rule checked: safe
    paths, no links, entry count, per-member and total sizes, compression ratio, other files (refused with
    `refuse_others`), at least one image. What the data holds is checked by copy_member."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:  # a directory larger than its end record says
        raise ArchiveRefused(
            "too_many_entries", f"{name}: more than {limits.max_entries} entries per archive; split it"
        )
    images, others, total = [], [], 0
    for info in infos:
        try:
            kind = member_kind(info)
        except MemberRefused as exc:
            raise ArchiveRefused("unsafe_archive", f"{name}: {exc}") from exc
        if kind == MemberKind.noise:
            continue
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            raise ArchiveRefused(
                "decompression_bomb",
                f"{name}: entry {info.filename!r} inflates {info.file_size // info.compress_size}x; refused",
            )
        if kind == MemberKind.other:
            others.append(info.filename)
            continue
        if info.file_size > limits.max_member_bytes:
            raise ArchiveRefused(
                "member_too_large",
                f"{name}: entry {info.filename!r} is {info.file_size} bytes uncompressed; the limit is "
                f"{limits.max_member_bytes}",
                413,
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArchiveRefused(
                "archive_too_large",
                f"{name}: inflates to more than {limits.max_total_bytes} bytes; split it",
                413,
            )
        images.append(info)
    if len(images) > limits.max_images:
        raise ArchiveRefused(
            "too_many_images",
            f"{name}: {len(images)} images is more than {limits.max_images}, the limit here; use fewer or split it",
        )
    if limits.refuse_others and others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ArchiveRefused(
            "non_image_entries",
            f"{name}: {listed} {'is not an image' if len(others) == 1 else 'are not images'} "
            f"({IMAGE_SUFFIX_LIST}); remove them from the zip",
        )
    if not images:
        raise ArchiveRefused("empty_archive", f"{name}: holds no images ({IMAGE_SUFFIX_LIST} entries)")
    return sorted(images, key=lambda info: info.header_offset)


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, out: BinaryIO | None = None) -> bytes:
    """Inflate one member into `out` (None: nowhere, only checked) in blocks, and return its sha256: a damaged
    entry, a CRC-32 or a size that lies, refused naming it. zipfile stops at the declared size and checks the
    CRC of what it inflated, so a member never writes more than image_members allowed; less is counted here."""
    digest, inflated = hashlib.sha256(), 0
    try:
        with zf.open(info) as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                inflated += len(block)
                if out is not None:
                    out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise ArchiveRefused(
            "corrupt_archive", f"{name}: entry {info.filename!r} is damaged ({exc}); zip it again"
        ) from exc
    if inflated != info.file_size:
        # zipfile stops at the declared size but accepts less data than declared when its CRC matches.
        raise ArchiveRefused(
            "corrupt_archive",
            f"{name}: entry {info.filename!r} is damaged (it holds {inflated} bytes, its directory declares "
            f"{info.file_size}); zip it again",
        )
    return digest.digest()
