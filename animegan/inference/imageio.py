"""Decoding and encoding of user images: EXIF orientation, every Pillow mode to RGB/RGBA, size limits.

Everything a user can upload goes through `load_image`, so it refuses bombs and non-images with an ImageError.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from animegan.errors import ImageError

logger = logging.getLogger(__name__)

# 64 Mpx (8000x8000): far above any photo a user means to stylize, far below what exhausts a worker's RAM.
DEFAULT_MAX_PIXELS = 64_000_000

# Pillow format names for the encoders we offer; "jpg" is accepted as an alias.
ENCODE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}

# 16-bit and 32-bit integer greyscale modes; Pillow's own convert("L") clips them instead of scaling.
_WIDE_INT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def load_image(source: bytes | str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image to RGB (or RGBA when it has transparency), with its EXIF orientation applied.

    Raises ImageError for data that is not an image, a truncated file, or more than `max_pixels` pixels
    (checked from the header, before the pixels are decoded); OSError (FileNotFoundError, ...) for paths.
    """
    name = f"file {source}" if isinstance(source, (str, Path)) else f"upload of {len(source)} bytes"
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(source, "rb")  # noqa: SIM115
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's bomb warning; its hard limit still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    f"{name}: {width}x{height} = {width * height:,} pixels is above the limit of "
                    f"{max_pixels:,} pixels; downscale it first or raise max_pixels"
                )
            image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{name}: not an image Pillow can decode (expected PNG, JPEG, WebP, TIFF, BMP, GIF, ...)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ImageError(f"{name}: the image data is truncated or corrupt ({exc})") from exc
    finally:
        stream.close()
    if width < 1 or height < 1:
        raise ImageError(f"{name}: the image has no pixels ({width}x{height})")
    try:
        image = ImageOps.exif_transpose(image)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        # A damaged EXIF block should not cost the user the picture; the orientation is then as stored.
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
    return to_rgb_or_rgba(image)


def to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, or RGBA when the image carries alpha or palette transparency."""
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        if mode == "RGB" and "transparency" in image.info:
            return image.convert("RGBA")
        return image
    if mode in _WIDE_INT_MODES or mode == "F":
        return _wide_grey_to_rgb(image)
    if mode == "CMYK":
        return image.convert("RGB")
    has_alpha = mode in ("LA", "La", "PA", "RGBa") or "transparency" in image.info
    if mode == "P" and has_alpha:
        return image.convert("RGBA")
    if mode in ("La", "RGBa"):
        # Premultiplied alpha: Pillow un-premultiplies when converting to the straight-alpha mode.
        image = image.convert("LA" if mode == "La" else "RGBA")
    return image.convert("RGBA" if has_alpha else "RGB")


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float greyscale to 8 bits (Pillow would clip at 255) and replicate to RGB."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        # Float images are taken as [0, 1] when they fit it (the common convention), else as 0..255.
        scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0  # 16-bit full range; 32-bit "I" PNGs from old Pillow hold 16-bit data too
    grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")


def split_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 RGB and the (H, W) uint8 alpha, or None when the image has none."""
    image = to_rgb_or_rgba(image)
    array = np.asarray(image)
    if image.mode == "RGBA":
        return np.ascontiguousarray(array[:, :, :3]), np.ascontiguousarray(array[:, :, 3])
    return array, None


def merge_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """The PIL image for an (H, W, 3) uint8 array, with an (H, W) alpha channel when given."""
    if alpha is None:
        return Image.fromarray(rgb, "RGB")
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def normalize_format(fmt: str) -> str:
    """Lower-case encoder name ('png', 'jpeg', 'webp'); ImageError naming the accepted ones otherwise."""
    key = fmt.lower().lstrip(".")
    if key not in ENCODE_FORMATS:
        raise ImageError(f"unknown output format {fmt!r}; use one of png, jpeg, webp")
    return "jpeg" if key == "jpg" else key


def encode_image(image: Image.Image, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode to PNG, JPEG or WebP bytes. JPEG has no alpha: an RGBA image is composited on white."""
    key = normalize_format(fmt)
    if not 1 <= quality <= 100:
        raise ImageError(f"quality {quality} is outside 1..100")
    image = to_rgb_or_rgba(image)
    options: dict[str, object] = {}
    if key == "jpeg":
        if image.mode == "RGBA":
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        options = {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    elif key == "webp":
        options = {"quality": quality, "lossless": quality == 100}
    buffer = io.BytesIO()
    image.save(buffer, format=ENCODE_FORMATS[key], **options)
    return buffer.getvalue()
