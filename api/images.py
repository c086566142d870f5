"""Checks of uploaded images and archives with Pillow and zipfile only, so bad input gets its 4xx at once.

Format and pixel count come from the header; an image within the pixel limit is then decoded whole (a truncated
file only shows when its data runs out); archives are checked by the one zip checker (workers.archives), the same one the worker runs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from animegan.sizes import reference_size
from api.errors import ApiError
from workers import media
from workers.archives import (
    ArchiveLimits,
    ArchiveRefused,
    ZipSource,
    copy_member,
    image_members,
    open_archive,
)

logger = logging.getLogger(__name__)

# Pillow format names of accepted inputs (the upper case of the media table's names); others get a 415.
ACCEPTED_FORMATS = frozenset(name.upper() for name in media.INPUT_IMAGE_FORMATS)


@dataclass(frozen=True)
class ImageInfo:
    """What the API learned from an image's header."""

    format: str  # Pillow format name, e.g. "JPEG"
    width: int
    height: int

    @property
    def ext(self) -> str:
        """Extension of the stored input, e.g. "jpg"."""
        return media.by_format(self.format).ext

    @property
    def content_type(self) -> str:
        return media.by_format(self.format).content_type


def inspect_image(data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Check that `data` is a complete image of an accepted format and at most `max_pixels`; raise ApiError.

    415 for bytes that are not an image, of another format, truncated or corrupt; 422 for too many pixels or a
    decompression bomb. Pillow's own pixel limit is off in the API (api.main), so `max_pixels` is the one that
    decides and the one the message names.
    """
    if not data:
        raise ApiError(415, "not_an_image", f"{name}: the file is empty; send a JPEG, PNG, WebP or BMP image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            _check_pixels(name, width, height, len(data), max_pixels)
            if fmt not in ACCEPTED_FORMATS:
                raise ApiError(
                    415,
                    "unsupported_format",
                    f"{name}: image format {fmt} is not accepted; send JPEG, PNG, WebP or BMP",
                )
            # verify() checks PNG chunk CRCs but stops at the header for JPEG; only decoding every pixel
            # finds a JPEG cut short. The worker decodes it anyway, so this costs no more than the job would.
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except UnidentifiedImageError as exc:
        raise ApiError(
            415, "not_an_image", f"{name}: not a readable image; send a JPEG, PNG, WebP or BMP file"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # verify() reports truncated or corrupt data with these.
        raise ApiError(
            415, "corrupt_image", f"{name}: the image data is corrupt or truncated ({exc})"
        ) from exc
    return ImageInfo(format=fmt, width=width, height=height)


def _check_pixels(name: str, width: int, height: int, nbytes: int, max_pixels: int) -> None:
    pixels = width * height
    if pixels <= max_pixels:
        return
    # A header claiming far more pixels than the bytes could plausibly hold is a bomb, not a big photo
    # (zlib and JPEG stay under about 1000 pixels per byte even on a flat colour).
    if pixels > nbytes * 1000:
        raise ApiError(
            422,
            "decompression_bomb",
            f"{name}: {width}x{height} pixels from {nbytes} bytes looks like a decompression bomb; refused",
        )
    raise ApiError(
        422,
        "too_many_pixels",
        f"{name}: {width}x{height} = {pixels} pixels is above the limit of {max_pixels}; downscale it first",
    )


def safe_name(name: str, fallback: str) -> str:
    """A display name for an uploaded file: its base name only, never a path (storage keys never use it)."""
    base = posixpath.basename(name.replace("\\", "/")).strip()
    return base[:200] if base and base not in (".", "..") else fallback


def archive_error(exc: ArchiveRefused) -> ApiError:
    """The API's answer to an archive the one checker (workers.archives) refused."""
    return ApiError(exc.status, exc.code, exc.message)


@contextmanager
def open_checked_archive(
    source: ZipSource, name: str, limits: ArchiveLimits
) -> Iterator[tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]]:
    """The open zip and its image members, every directory-level rule checked; ApiError naming the problem."""
    try:
        zf = open_archive(source, name, limits)
    except ArchiveRefused as exc:
        raise archive_error(exc) from exc
    with zf:
        try:
            members = image_members(zf, name, limits)
        except ArchiveRefused as exc:
            raise archive_error(exc) from exc
        yield zf, members


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """One member's bytes, its CRC-32 and size checked (the member is at most the limit image_members set)."""
    out = io.BytesIO()
    try:
        copy_member(zf, info, name, out)
    except ArchiveRefused as exc:
        raise archive_error(exc) from exc
    return out.getvalue()


@dataclass(frozen=True)
class ArchiveImage:
    """An image of a batch archive, checked and let go: the job's input is read from the archive again."""

    name: str  # display name (the entry's base name)
    info: ImageInfo
    member: zipfile.ZipInfo
    sha256: bytes  # of the bytes checked, compared when they are read again to be stored


def scan_image_archive(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], name: str, max_pixels: int
) -> list[ArchiveImage]:
    """Each image member of a batch archive checked like a single upload, in name order, holding one at a
    time in memory. Any other file was refused rather than skipped (ArchiveLimits.refuse_others): a batch that
    silently drops entries answers fewer results than the client sent, with nothing saying which."""
    out: list[ArchiveImage] = []
    for info in sorted(members, key=lambda i: i.filename):
        label = f"{name}:{info.filename}"
        body = read_member(zf, info, name)
        image = inspect_image(body, label, max_pixels)
        out.append(
            ArchiveImage(
                safe_name(info.filename, f"image-{len(out)}"), image, info, hashlib.sha256(body).digest()
            )
        )
    return out


def check_dataset_archive(source: ZipSource, name: str, limits: ArchiveLimits) -> int:
    """Check a training dataset archive (zip of images) as the worker will unpack it; return its image count.

    The directory rules and every member's data (CRC-32, true size) are checked, each member inflated in blocks
    and dropped, so a dataset the worker would refuse costs neither a queued job nor a worker's extraction.
    """
    with open_checked_archive(source, name, limits) as (zf, members):
        for info in members:
            try:
                copy_member(zf, info, name)
            except ArchiveRefused as exc:
                raise archive_error(exc) from exc
        return len(members)


# EXIF orientations that turn the stored image a quarter turn: its displayed width and height swap.
_QUARTER_TURNS = {5, 6, 7, 8}
MAX_LISTED_PROBLEMS = 20


def _displayed_sizes(zf: zipfile.ZipFile, entries: list[zipfile.ZipInfo], archive: str) -> dict[str, tuple]:
    """stem -> (file name, (width, height) as displayed) of each image entry, from its header only."""
    out: dict[str, tuple] = {}
    for info in entries:
        base = posixpath.basename(info.filename)
        stem = posixpath.splitext(base)[0]
        if stem in out:
            raise ApiError(
                422, "bad_dataset", f"{archive}: two images are named {stem!r}; names must be unique"
            )
        try:
            with zf.open(info) as f, Image.open(io.BytesIO(f.read())) as img:
                width, height = img.size
                if img.getexif().get(0x0112) in _QUARTER_TURNS:
                    width, height = height, width
        except (OSError, UnidentifiedImageError, zipfile.BadZipFile, Image.DecompressionBombError) as exc:
            raise ApiError(422, "bad_dataset", f"{archive}: {base} is not a readable image ({exc})") from exc
        out[stem] = (base, (width, height))
    return out


def check_paired_archives(photos: ZipSource, targets: ZipSource, limits: ArchiveLimits) -> int:
    """Photos and targets must pair up by file name, each target the photo's size or its reference size.

    Every problem is named in one 422, so a user fixes the whole dataset in one go; returns the pair count.
    """
    with open_checked_archive(photos, "photos", limits) as (pz, photo_members):
        photo_sizes = _displayed_sizes(pz, photo_members, "photos")
    with open_checked_archive(targets, "targets", limits) as (tz, target_members):
        target_sizes = _displayed_sizes(tz, target_members, "targets")
    problems = [
        f"photo {photo_sizes[s][0]} has no target" for s in sorted(photo_sizes.keys() - target_sizes.keys())
    ]
    problems += [
        f"target {target_sizes[s][0]} has no photo" for s in sorted(target_sizes.keys() - photo_sizes.keys())
    ]
    for stem in sorted(photo_sizes.keys() & target_sizes.keys()):
        (name, (pw, ph)), (tname, (tw, th)) = photo_sizes[stem], target_sizes[stem]
        rh, rw = reference_size(ph, pw)
        if (tw, th) not in {(pw, ph), (rw, rh)}:
            problems.append(f"{tname} is {tw}x{th}; its photo {name} is {pw}x{ph} (reference size {rw}x{rh})")
    if problems:
        shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = (
            f"; and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        )
        raise ApiError(
            422,
            "unmatched_pairs",
            f"photos and targets must pair up by file name, each target the photo's size or its reference size: "
            f"{shown}{more}",
        )
    return len(photo_sizes)
