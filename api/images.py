"""Checks of uploaded images and archives with Pillow and zipfile only, so bad input gets its 4xx at once.

Format and pixel count come from the header; an image within the pixel limit is then decoded whole (a truncated
file only shows when its data runs out); archives are read with limits on entry count, size and ratio.
"""

from __future__ import annotations

import io
import logging
import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from animegan.sizes import reference_size
from api.errors import ApiError
from workers import media
from workers.archives import MemberKind, MemberRefused, member_kind
from workers.media import IMAGE_SUFFIX_LIST

logger = logging.getLogger(__name__)

# Pillow format names of accepted inputs (the upper case of the media table's names); others get a 415.
ACCEPTED_FORMATS = frozenset(name.upper() for name in media.INPUT_IMAGE_FORMATS)
# An archive entry that inflates more than this is treated as a zip bomb.
MAX_COMPRESSION_RATIO = 200


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


def _zip(source: bytes | Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except zipfile.BadZipFile as exc:
        raise ApiError(415, "not_a_zip", f"{name}: not a zip archive ({exc})") from exc


def _check_ratio(info: zipfile.ZipInfo, archive: str) -> None:
    if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
        raise ApiError(
            422,
            "decompression_bomb",
            f"{archive}: entry {info.filename!r} inflates {info.file_size // max(info.compress_size, 1)}x; refused",
        )


def _image_entries(
    zf: zipfile.ZipFile, archive: str, max_total_bytes: int, refuse_others: bool = False
) -> list[zipfile.ZipInfo]:
    """The image entries (workers.archives decides, as for the worker's extraction); other files are skipped,
    or with `refuse_others` answered with 422 naming them."""
    entries, others, total = [], [], 0
    for info in zf.infolist():
        try:
            kind = member_kind(info)
        except MemberRefused as exc:
            raise ApiError(422, "unsafe_archive", f"{archive}: {exc}") from exc
        if kind == MemberKind.noise:
            continue
        _check_ratio(info, archive)
        if kind == MemberKind.other:
            others.append(info.filename)
            continue
        total += info.file_size
        if total > max_total_bytes:
            raise ApiError(
                413,
                "archive_too_large",
                f"{archive}: inflates to more than {max_total_bytes} bytes; split it",
            )
        entries.append(info)
    if refuse_others and others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ApiError(
            422,
            "non_image_entries",
            f"{archive}: {listed} {'is not an image' if len(others) == 1 else 'are not images'} "
            f"({IMAGE_SUFFIX_LIST}); remove them from the zip",
        )
    if not entries:
        raise ApiError(422, "empty_archive", f"{archive}: holds no images ({IMAGE_SUFFIX_LIST} entries)")
    return entries


def read_image_archive(
    data: bytes, name: str, max_images: int, max_total_bytes: int, max_pixels: int
) -> list[tuple[str, bytes, ImageInfo]]:
    """The images of a zip archive, in name order, each checked like a single upload.

    Any other file is refused rather than skipped: a batch that silently drops entries answers fewer results
    than the client sent, with nothing saying which (a loose image of another format, a misnamed file).
    """
    with _zip(data, name) as zf:
        entries = sorted(
            _image_entries(zf, name, max_total_bytes, refuse_others=True), key=lambda i: i.filename
        )
        if len(entries) > max_images:
            raise ApiError(
                422,
                "too_many_images",
                f"{name}: {len(entries)} images is above the batch limit of {max_images}; split the batch",
            )
        out: list[tuple[str, bytes, ImageInfo]] = []
        for info in entries:
            label = f"{name}:{info.filename}"
            try:
                body = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                # A bad CRC or damaged deflate data is the client's archive, not a server error.
                raise ApiError(
                    422, "corrupt_archive", f"{label}: the entry is damaged ({exc}); zip it again"
                ) from exc
            out.append(
                (safe_name(info.filename, f"image-{len(out)}"), body, inspect_image(body, label, max_pixels))
            )
        return out


def check_dataset_archive(source: bytes | Path, name: str, max_total_bytes: int, max_images: int) -> int:
    """Check a training dataset archive (zip of images) from its directory only; return its image count.

    The count is the worker's limit too (ANIMEGAN_MAX_DATASET_IMAGES): refused here, a dataset it would refuse
    costs neither a queued job nor an extraction on a worker's disk.
    """
    with _zip(source, name) as zf:
        count = len(_image_entries(zf, name, max_total_bytes))
    if count > max_images:
        raise ApiError(
            422,
            "too_many_images",
            f"{name}: {count} images is above the limit of {max_images} per dataset archive; use fewer",
        )
    return count


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


def check_paired_archives(photos: Path, targets: Path, max_total_bytes: int) -> int:
    """Photos and targets must pair up by file name, each target the photo's size or its reference size.

    Every problem is named in one 422, so a user fixes the whole dataset in one go; returns the pair count.
    """
    with _zip(photos, "photos") as pz, _zip(targets, "targets") as tz:
        photo_sizes = _displayed_sizes(pz, _image_entries(pz, "photos", max_total_bytes), "photos")
        target_sizes = _displayed_sizes(tz, _image_entries(tz, "targets", max_total_bytes), "targets")
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
