"""Training datasets on a worker's disk: safe unpacking of uploaded zips and a size-bounded cache of them.

Members are never written under their own names: each image gets a fresh name from its index, so no
member can escape the folder ('../', absolute paths, links). Only images count; sizes and counts are capped.
A names file maps each fresh name back to the user's entry name, so job errors name the user's own entries
and never this machine's paths.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from workers.archives import (
    ArchiveLimits,
    ArchiveRefused,
    copy_member,
    image_members,
    member_path,
    open_archive,
)
from workers.jobs import JobInputError

logger = logging.getLogger(__name__)

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
NAMES_FILE = "names.json"  # fresh file name -> the archive entry it came from
DONE_MARKER = ".complete"  # written last: a folder without it is an interrupted extraction


def unpack_images(
    archive: Path, out_dir: Path, what: str, limits: ArchiveLimits | None = None, keep_names: bool = False
) -> int:
    """Extract the images of `archive` into `out_dir` as 000000.<ext>, ...; return how many.

    Non-image members (folders, __MACOSX, text files) are skipped; unsafe names and links are refused outright,
    since an archive that tries path traversal is not an honest dataset. Raises JobInputError("bad_dataset")
    naming the entry, and then leaves no `out_dir` behind.
    keep_names (paired data, matched by name): each image is written under its own base name instead, made
    safe (letters, digits, '.', '-', '_'); two members with one base name are refused.
    """
    limits = limits or ArchiveLimits()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        count = _extract(archive, out_dir, what, limits, keep_names)
    except BaseException:
        # A refused or broken archive must not leave thousands of extracted files on the worker's disk.
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    logger.info("unpacked %d %s images into %s", count, what, out_dir)
    return count


def _extract(archive: Path, out_dir: Path, what: str, limits: ArchiveLimits, keep_names: bool) -> int:
    """The API's checker (workers.archives) again, on the downloaded file: the directory rules first, then
    each member's data as it is written (CRC-32 and true size)."""
    label = f"{what} archive"
    names: dict[str, str] = {}
    try:
        with open_archive(archive, label, limits) as zf:
            for info in image_members(zf, label, limits):
                path = member_path(info)
                fresh = _safe_base_name(path) if keep_names else f"{len(names):06d}{path.suffix.lower()}"
                if fresh in names:
                    raise JobInputError(
                        "bad_dataset", f"{label} has two images named {path.name!r}; names must be unique"
                    )
                with (out_dir / fresh).open("wb") as out:
                    copy_member(zf, info, label, out)
                names[fresh] = info.filename
    except ArchiveRefused as exc:
        raise JobInputError("bad_dataset", exc.message) from exc
    (out_dir / NAMES_FILE).write_text(json.dumps(names))
    return len(names)


def _safe_base_name(path: PurePosixPath) -> str:
    """The member's own file name with anything but [A-Za-z0-9._-] replaced: never a path, never hidden."""
    stem = _UNSAFE_CHARS.sub("_", path.stem) or "image"
    return f"{stem}{path.suffix.lower()}"


class DatasetCache:
    """Unpacked datasets on this machine, reused by later segments and bounded in size (least recently used
    datasets go first). Dataset ids are immutable, so a complete folder never needs refreshing.

    Layout: <root>/<dataset id>/<part>/ with DONE_MARKER written last; a dataset's folder mtime is its last use.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def part(
        self,
        dataset_id: str,
        part: str,
        fetch: Callable[[Path], None],
        limits: ArchiveLimits | None = None,
        keep_names: bool = False,
    ) -> Path:
        """The unpacked folder of one part, unpacking the archive that `fetch(path)` downloads if needed
        (keep_names: see unpack_images; a dataset id is one job's, so a part is always unpacked one way)."""
        folder = self.root / dataset_id / part
        if not (folder / DONE_MARKER).is_file():
            self._unpack(folder, part, fetch, limits, keep_names)
        os.utime(folder.parent)  # last use, for eviction
        return folder

    def _unpack(
        self,
        folder: Path,
        part: str,
        fetch: Callable[[Path], None],
        limits: ArchiveLimits | None,
        keep_names: bool,
    ) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Unpack beside the cache entry, then rename, so a crash never leaves a half-filled folder marked done.
        staging = folder.with_name(f".{part}-{uuid.uuid4().hex[:8]}")
        archive = folder.with_name(f".{part}-{uuid.uuid4().hex[:8]}.zip")
        try:
            fetch(archive)
            count = unpack_images(archive, staging, what=part, limits=limits, keep_names=keep_names)
            (staging / DONE_MARKER).write_text(str(count))
            try:
                staging.rename(folder)
            except OSError:
                # Another worker process on this machine finished the same folder first; theirs is as good.
                if not (folder / DONE_MARKER).is_file():
                    raise
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used datasets (never `keep`) until the cache fits max_bytes; their ids.

        Another process's running segment decoded its images into memory when it started, so losing its folder
        costs at most a download and an extraction at its next segment.
        """
        if not self.root.is_dir():
            return []
        sizes = {
            d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            for d in self.root.iterdir()
            if d.is_dir()
        }
        total = sum(sizes.values())
        removed = []
        for folder in sorted(sizes, key=lambda d: d.stat().st_mtime):
            if total <= self.max_bytes:
                break
            if folder.name == keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]
            removed.append(folder.name)
        if removed:
            logger.info("dataset cache: removed %d least recently used datasets (%s)", len(removed), removed)
        return removed


def evict_files(folder: Path, max_bytes: int) -> list[Path]:
    """Remove the least recently used files of a flat cache folder (by mtime, which the edge-smoothing cache
    touches on every hit) until it holds at most max_bytes; the removed paths.

    A file removed under a running trainer is not lost work: that trainer read it already, or recomputes it.
    """
    if not folder.is_dir():
        return []
    files = []
    for path in folder.iterdir():
        try:
            info = path.stat()
        except OSError:  # removed by another process meanwhile
            continue
        if stat.S_ISREG(info.st_mode):
            files.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    if removed:
        logger.info(
            "%s: removed %d least recently used files to stay under %d bytes", folder, len(removed), max_bytes
        )
    return removed


# An object's repr ("<_io.BytesIO object at 0x7f...>") tells the user nothing and shows memory addresses.
_ADDRESS = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def user_message(message: str, folders: dict[str, Path]) -> str:
    """`message` with every path under the dataset `folders` (part -> folder) replaced by the user's entry name,
    and object reprs removed, so a job error names only what the user sent."""
    for part, folder in folders.items():
        names_file = folder / NAMES_FILE
        names: dict[str, str] = json.loads(names_file.read_text()) if names_file.is_file() else {}
        pattern = re.compile(re.escape(str(folder)) + r"/([^\s:]+)")

        def entry(match: re.Match[str], part: str = part, names: dict[str, str] = names) -> str:
            return f"{part} archive entry {names.get(match.group(1), match.group(1))!r}"

        message = pattern.sub(entry, message)
        message = message.replace(str(folder), f"{part} archive")
    return _ADDRESS.sub("", message)
