"""The one media table of the service: format name, stored file extension and content type of every file kind
the API accepts or the workers write. Everything else (API routes, workers, the CLI) looks things up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Media:
    format: str  # the name users and encoders use ("jpeg"); Pillow's format name is its upper case
    ext: str  # extension of stored objects ("jpg")
    content_type: str


MEDIA = (
    Media("png", "png", "image/png"),
    Media("jpeg", "jpg", "image/jpeg"),
    Media("webp", "webp", "image/webp"),
    Media("bmp", "bmp", "image/bmp"),  # accepted as an input only: stylized images are png, jpeg or webp
    Media("zip", "zip", "application/zip"),
    Media("mp4", "mp4", "video/mp4"),
    # Exported generators (the export kind); ONNX has no registered media type, so downloads are plain bytes.
    Media("onnx", "onnx", "application/octet-stream"),
)
_BY_FORMAT = {m.format: m for m in MEDIA}
_BY_EXT = {m.ext: m for m in MEDIA}
OCTET_STREAM = "application/octet-stream"


class ImageFormat(StrEnum):
    """The formats a stylized image can be written in (the encoder's names)."""

    png = "png"
    jpeg = "jpeg"
    webp = "webp"


INPUT_IMAGE_FORMATS = ("jpeg", "png", "webp", "bmp")  # what the API accepts as an input image
# File name suffixes of input images (archive members, built-in files), from the table: .jpg and .jpeg both.
IMAGE_SUFFIXES = frozenset({".jpeg"} | {f".{_BY_FORMAT[name].ext}" for name in INPUT_IMAGE_FORMATS})
IMAGE_SUFFIX_LIST = ", ".join(sorted(IMAGE_SUFFIXES))  # for messages: ".bmp, .jpeg, .jpg, .png, .webp"

# The stored clip's extension, by FFmpeg's container name (first of its aliases); others are stored as .video.
CONTAINER_EXT = {"mov": "mp4", "matroska": "mkv", "avi": "avi", "mpegts": "ts", "flv": "flv", "ogg": "ogv"}
UNKNOWN_CONTAINER_EXT = "video"


def by_format(name: str) -> Media:
    """The row of a format name; also takes Pillow's names ("JPEG") and the "jpg" alias."""
    key = name.lower()
    return _BY_FORMAT.get(key) or _BY_EXT[key]


def content_type_of(key: str) -> str:
    """Content type of a stored object by its extension; octet-stream for one the table does not know."""
    media = _BY_EXT.get(key.rsplit(".", 1)[-1].lower()) if "." in key else None
    return media.content_type if media else OCTET_STREAM
