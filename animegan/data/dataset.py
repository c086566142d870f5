"""Unpaired photo / style data for AnimeGAN training: validated, resized once, served as seeded batches.

Three independently shuffled streams (photos, style images, edge-smoothed style images) as in the reference.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from animegan.atomic import atomic_write
from animegan.data.edge_smooth import SmoothCache, smooth_edges, touch
from animegan.errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
# Upscaling more than 2x only teaches G blur; smaller images are reported instead of used.
MIN_SIDE_FLOOR = 16
MAX_LISTED_ERRORS = 20  # bad files named in one DatasetError message (all are logged)
DECODE_CACHE_VERSION = 1  # bump when decode_fitted changes so stale decoded arrays are never reused

ImageSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def list_images(source: ImageSource, role: str) -> list[Path]:
    """Image files of a folder (sorted, by extension, hidden files skipped) or an explicit list of paths."""
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise DatasetError(f"{role} folder {folder} does not exist or is not a folder")
        paths = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not paths:
            raise DatasetError(
                f"{role} folder {folder} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})"
            )
        return paths
    paths = [Path(p) for p in source]
    if not paths:
        raise DatasetError(f"the {role} list is empty; give at least one image")
    return paths


def min_side_for(image_size: int) -> int:
    return max(MIN_SIDE_FLOOR, image_size // 2)


def decode_fitted(content: bytes, image_size: int, min_side: int) -> np.ndarray:
    """Decode image bytes, apply EXIF orientation, resize the short side and center-crop to a square.

    Returns (image_size, image_size, 3) uint8 RGB; raises ValueError/OSError on undecodable or tiny images.
    """
    if not content:
        raise ValueError("the file is empty")
    try:
        img = Image.open(io.BytesIO(content))
    except UnidentifiedImageError:
        # Pillow's message names the in-memory buffer's repr ("<_io.BytesIO object at 0x...>"), not the file.
        raise ValueError("not an image Pillow can read (JPEG, PNG, WebP, BMP, ...)") from None
    with img:
        w, h = img.size
        if min(w, h) < min_side:
            raise ValueError(f"{w}x{h} is too small (shorter side must be at least {min_side} px)")
        # JPEG: let the decoder downscale by 1/2..1/8 while both sides stay >= image_size (much faster
        # for 1080p style frames; the final resize below does the rest)
        img.draft("RGB", (image_size, image_size))
        img.load()  # decode now: truncated files fail here, not later in a batch
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    fitted = ImageOps.fit(rgb, (image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(fitted, dtype=np.uint8)


@dataclass
class ImageSet:
    """A role's images decoded at the training size. color: (N, S, S, 3) uint8 RGB; gray: (N, S, S) uint8."""

    role: str
    paths: list[Path]
    digests: list[str]  # sha256 of each file's bytes: the smooth cache's key
    color: np.ndarray
    gray: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def load_image_set(
    source: ImageSource, role: str, image_size: int, cache_dir: str | os.PathLike[str] | None = None
) -> ImageSet:
    """Decode every image once; a bad file anywhere fails here with a DatasetError naming all of them.

    With cache_dir the decoded (N, S, S, 3) array is kept on disk, keyed by every file's content and the size,
    so later training segments skip decoding (a changed, added or removed file makes a new entry).
    """
    paths = list_images(source, role)
    digests: list[str] = []
    bad: list[str] = []
    unreadable: set[Path] = set()
    for path in paths:
        try:
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError as exc:
            bad.append(f"{path}: {exc}")
            unreadable.add(path)
    cache_path = None
    if cache_dir is not None and not bad:
        key = hashlib.sha256(f"v{DECODE_CACHE_VERSION}|{image_size}|{'|'.join(digests)}".encode()).hexdigest()
        cache_path = Path(cache_dir) / f"decoded-{role.replace(' ', '_')}-{image_size}-{key[:40]}.npy"
    color = _read_cached(cache_path, (len(paths), image_size, image_size, 3))
    if color is None:
        color = np.empty((len(paths), image_size, image_size, 3), np.uint8)
        min_side = min_side_for(image_size)
        for i, path in enumerate(paths):
            if path in unreadable:
                continue
            try:
                color[i] = decode_fitted(path.read_bytes(), image_size, min_side)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                bad.append(f"{path}: {exc}")
        if not bad and cache_path is not None:
            _write_cached(cache_path, color)
    if bad:
        for line in bad:
            logger.error("bad %s image %s", role, line)
        shown = "\n  ".join(bad[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(bad) - MAX_LISTED_ERRORS} more" if len(bad) > MAX_LISTED_ERRORS else ""
        raise DatasetError(
            f"{len(bad)} of {len(paths)} {role} images cannot be used; fix or remove them:\n  {shown}{more}"
        )
    gray = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in color]) if len(color) else color[..., 0]
    return ImageSet(role=role, paths=paths, digests=digests, color=color, gray=gray)


def _read_cached(path: Path | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        array = np.load(path)
    except (OSError, ValueError) as exc:
        logger.warning("unreadable decoded-image cache %s (%s); decoding again", path, exc)
        return None
    if array.shape != shape or array.dtype != np.uint8:
        logger.warning(
            "decoded-image cache %s holds %s %s, expected %s; decoding again",
            path,
            array.shape,
            array.dtype,
            shape,
        )
        return None
    touch(path)
    return array


def _write_cached(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as f:  # a concurrent reader sees the old state or the whole file
        np.save(f, array)


class ShuffledStream:
    """Endless seeded index stream: a fresh permutation per pass, batches may span passes (tf repeat+shuffle)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.position = 0

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if self.position >= len(self.order):
                self.order = torch.randperm(self.n, generator=self.generator).tolist()
                self.position = 0
            step = min(count - len(out), len(self.order) - self.position)
            out.extend(self.order[self.position : self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict:
        return {
            "n": self.n,
            "generator": self.generator.get_state(),
            "order": list(self.order),
            "position": self.position,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise DatasetError(
                f"the checkpoint's data stream had {state['n']} images, this dataset has {self.n}; "
                "resume with the same photo/style sets or start a new run directory"
            )
        self.generator.set_state(state["generator"])
        self.order = list(state["order"])
        self.position = int(state["position"])


@dataclass
class TrainBatch:
    """One training batch, each (B, 3, S, S) float in [-1, 1]; gray images are replicated to 3 channels."""

    photo: torch.Tensor
    anime: torch.Tensor
    anime_gray: torch.Tensor
    smooth_gray: torch.Tensor

    def to(
        self, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format
    ) -> TrainBatch:
        tensors = (self.photo, self.anime, self.anime_gray, self.smooth_gray)
        return TrainBatch(*(t.to(device, non_blocking=True, memory_format=memory_format) for t in tensors))


def to_tensor_color(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1], the reference x / 127.5 - 1."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_tensor_gray(images: np.ndarray) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 3, H, W) float in [-1, 1] (gray replicated, as the reference feeds D)."""
    return (torch.from_numpy(images).float() / 127.5 - 1.0).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


class UnpairedDataset:
    """Photos and style images (plus their edge-smoothed versions) served as seeded, resumable batches."""

    def __init__(
        self,
        photos: ImageSource,
        styles: ImageSource,
        image_size: int,
        batch_size: int,
        seed: int,
        smooth_cache_dir: str | os.PathLike[str],
        smoothed: ImageSource | None = None,
    ) -> None:
        if image_size < 8 or image_size % 4:
            raise DatasetError(f"image_size must be a multiple of 4 and at least 8, got {image_size}")
        if batch_size < 1:
            raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
        self.image_size = image_size
        self.batch_size = batch_size
        self.photos = load_image_set(photos, "photo", image_size, cache_dir=smooth_cache_dir)
        self.styles = load_image_set(styles, "style", image_size, cache_dir=smooth_cache_dir)
        self.cache_dir = Path(smooth_cache_dir)  # decoded and edge-smoothed images, keyed by file content
        self.smooth_cache = SmoothCache(smooth_cache_dir)
        # (M, S, S) uint8: D only ever sees the smoothed style images in grayscale
        if smoothed is None:
            self.smooth_gray = np.stack(
                [
                    cv2.cvtColor(
                        self.smooth_cache.get_or_compute(digest, image_size, rgb), cv2.COLOR_RGB2GRAY
                    )
                    for digest, rgb in zip(self.styles.digests, self.styles.color, strict=True)
                ]
            )
        else:
            self.smooth_gray = load_image_set(
                smoothed, "smoothed style", image_size, cache_dir=smooth_cache_dir
            ).gray
        # Distinct seeds: the three streams are shuffled independently, as in the reference.
        self.streams = {
            "photo": ShuffledStream(len(self.photos), seed * 3 + 0),
            "style": ShuffledStream(len(self.styles), seed * 3 + 1),
            "smooth": ShuffledStream(len(self.smooth_gray), seed * 3 + 2),
        }
        logger.info(
            "dataset: %d photos, %d style images, %d smoothed (cache hits %d, computed %d), %d px, batch %d",
            len(self.photos),
            len(self.styles),
            len(self.smooth_gray),
            self.smooth_cache.hits,
            self.smooth_cache.misses,
            image_size,
            batch_size,
        )

    @property
    def iterations_per_epoch(self) -> int:
        return max(max(len(self.photos), len(self.styles)) // self.batch_size, 1)

    def next_batch(self) -> TrainBatch:
        b = self.batch_size
        p = self.streams["photo"].take(b)
        s = self.streams["style"].take(b)
        m = self.streams["smooth"].take(b)
        return TrainBatch(
            photo=to_tensor_color(self.photos.color[p]),
            anime=to_tensor_color(self.styles.color[s]),
            anime_gray=to_tensor_gray(self.styles.gray[s]),
            smooth_gray=to_tensor_gray(self.smooth_gray[m]),
        )

    def state_dict(self) -> dict:
        return {name: stream.state_dict() for name, stream in self.streams.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, stream in self.streams.items():
            stream.load_state_dict(state[name])


def smooth_folder(source: ImageSource, out_dir: str | os.PathLike[str], image_size: int) -> list[Path]:
    """Write the edge-smoothed version of every style image to out_dir/<stem>.png (the reference's smooth/)."""
    images = load_image_set(source, "style", image_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, rgb in zip(images.paths, images.color, strict=True):
        target = out / f"{path.stem}.png"
        Image.fromarray(smooth_edges(rgb)).save(target, format="PNG")
        written.append(target)
    return written
