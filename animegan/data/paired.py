"""Paired (photo, target) data and photo-only crops for distillation: full-size images, random aligned crops.

Pairs are matched by file name (the stem, so photo_01.jpg pairs with photo_01.png). A target may be the photo's
own size or its reference inference size (each side floored to a multiple of 32, as AnimeGAN's test.py writes
its outputs); the photo is then resized to the target's size, so both share one pixel grid.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from animegan.data.dataset import (
    MAX_LISTED_ERRORS,
    ImageSource,
    ShuffledStream,
    list_images,
    to_tensor_color,
)
from animegan.data.edge_smooth import smooth_edges
from animegan.errors import DatasetError
from animegan.sizes import reference_size

logger = logging.getLogger(__name__)


def decode_rgb(content: bytes, max_pixels: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of image bytes, EXIF orientation applied; ValueError/OSError on a bad file."""
    if not content:
        raise ValueError("the file is empty")
    with Image.open(io.BytesIO(content)) as img:
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ValueError(f"{img.width}x{img.height} has more than {max_pixels} pixels")
        img.load()  # truncated files fail here
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)


def _fit_long_side(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _raise_collected(problems: list[str], total: int, what: str) -> None:
    if not problems:
        return
    for line in problems:
        logger.error("bad %s: %s", what, line)
    shown = "\n  ".join(problems[:MAX_LISTED_ERRORS])
    more = (
        f"\n  ... and {len(problems) - MAX_LISTED_ERRORS} more" if len(problems) > MAX_LISTED_ERRORS else ""
    )
    raise DatasetError(f"{len(problems)} problem(s) with the {total} {what}; fix them:\n  {shown}{more}")


@dataclass
class CropSet:
    """Full-size images for random crops: photos[i] is (H_i, W_i, 3) uint8; targets[i], when paired, the same size."""

    names: list[str]
    photos: list[np.ndarray]
    targets: list[np.ndarray] | None  # None: photo-only (the targets come from a teacher)

    def __len__(self) -> int:
        return len(self.names)


def load_pairs(
    photos: ImageSource, targets: ImageSource, max_pixels: int | None = None, max_side: int | None = None
) -> CropSet:
    """Match photos and targets by file stem, decode both and align sizes; every problem is named in one error.

    max_side, if given, scales both images of a pair down (same factor) so the longer side fits.
    """
    photo_paths = {p.stem: p for p in list_images(photos, "photo")}
    target_paths = {p.stem: p for p in list_images(targets, "target")}
    problems = [
        f"photo {photo_paths[s].name} has no target of the same name"
        for s in photo_paths.keys() - target_paths.keys()
    ]
    problems += [
        f"target {target_paths[s].name} has no photo of the same name"
        for s in target_paths.keys() - photo_paths.keys()
    ]
    problems.sort()
    names, photo_arrays, target_arrays = [], [], []
    for stem in sorted(photo_paths.keys() & target_paths.keys()):
        decoded = []
        for path in (photo_paths[stem], target_paths[stem]):
            try:
                decoded.append(decode_rgb(path.read_bytes(), max_pixels))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                problems.append(f"{path.name}: cannot be decoded ({exc})")
        if len(decoded) < 2:
            continue
        photo, target = decoded
        (ph, pw), (th, tw) = photo.shape[:2], target.shape[:2]
        if (th, tw) != (ph, pw):
            if (th, tw) != reference_size(ph, pw):
                problems.append(
                    f"{stem}: target is {tw}x{th}, photo is {pw}x{ph}; a target must be the photo's size or "
                    f"its reference size {reference_size(ph, pw)[1]}x{reference_size(ph, pw)[0]}"
                )
                continue
            # Bilinear, as test.py resizes the photo it feeds G: then pixel (i, j) of both shows one place.
            photo = cv2.resize(photo, (tw, th), interpolation=cv2.INTER_LINEAR)
        names.append(stem)
        photo_arrays.append(_fit_long_side(photo, max_side))
        target_arrays.append(_fit_long_side(target, max_side))
    _raise_collected(problems, len(photo_paths.keys() | target_paths.keys()), "photo/target pairs")
    return CropSet(names, photo_arrays, target_arrays)


def load_photos(photos: ImageSource, max_pixels: int | None = None, max_side: int | None = None) -> CropSet:
    """Photos alone, full size (or fitted to max_side), for distillation from a teacher."""
    paths = list_images(photos, "photo")
    problems, names, arrays = [], [], []
    for path in paths:
        try:
            arrays.append(_fit_long_side(decode_rgb(path.read_bytes(), max_pixels), max_side))
            names.append(path.stem)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            problems.append(f"{path.name}: cannot be decoded ({exc})")
    _raise_collected(problems, len(paths), "photos")
    return CropSet(names, arrays, None)


@dataclass
class PairBatch:
    """(B, 3, S, S) float in [-1, 1]; target is None when a teacher makes it; smooth (the same crops of the
    edge-smoothed targets) only when the dataset was asked for them."""

    photo: torch.Tensor
    target: torch.Tensor | None
    smooth: torch.Tensor | None = None

    def to(
        self, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format
    ) -> PairBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True, memory_format=memory_format)

        return PairBatch(move(self.photo), move(self.target), move(self.smooth))


class CropDataset:
    """Seeded, resumable batches of random square crops: the same window and flip of a photo and its target."""

    def __init__(
        self, images: CropSet, image_size: int, batch_size: int, seed: int, smooth_targets: bool = False
    ) -> None:
        if image_size < 8 or image_size % 4:
            raise DatasetError(f"image_size must be a multiple of 4 and at least 8, got {image_size}")
        if batch_size < 1:
            raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
        if len(images) == 0:
            raise DatasetError("no training images")
        self.images = self._at_least(images, image_size)
        if smooth_targets and self.images.targets is None:
            raise DatasetError("smoothed targets need a paired dataset (photos and targets)")
        # AnimeGAN's edge-promoting negatives for paired training: each target with its edges blurred, whole
        # (the crops below cut both at one window), computed once (~0.1 s a megapixel).
        self.smoothed = [smooth_edges(t) for t in self.images.targets] if smooth_targets else None
        self.image_size, self.batch_size = image_size, batch_size
        self.stream = ShuffledStream(len(images), seed * 3 + 0)
        self.crops = torch.Generator().manual_seed(seed * 3 + 1)
        logger.info(
            "dataset: %d %s, %d px crops, batch %d",
            len(images),
            "photos" if images.targets is None else "pairs",
            image_size,
            batch_size,
        )

    @staticmethod
    def _at_least(images: CropSet, side: int) -> CropSet:
        """Upscale (both images of a pair alike) any image whose shorter side is below the crop size."""

        def grow(rgb: np.ndarray) -> np.ndarray:
            h, w = rgb.shape[:2]
            if min(h, w) >= side:
                return rgb
            scale = side / min(h, w)
            size = (max(side, round(w * scale)), max(side, round(h * scale)))
            return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)

        targets = None if images.targets is None else [grow(t) for t in images.targets]
        return CropSet(images.names, [grow(p) for p in images.photos], targets)

    @property
    def iterations_per_epoch(self) -> int:
        return max(len(self.images) // self.batch_size, 1)

    def _window(self, i: int) -> tuple[int, int, bool]:
        h, w = self.images.photos[i].shape[:2]
        s = self.image_size
        y = int(torch.randint(h - s + 1, (1,), generator=self.crops))
        x = int(torch.randint(w - s + 1, (1,), generator=self.crops))
        flip = bool(torch.randint(2, (1,), generator=self.crops))
        return y, x, flip

    def next_batch(self) -> PairBatch:
        s = self.image_size
        columns: list[list[np.ndarray]] = [[], [], []]  # photos, targets, smoothed targets
        for i in self.stream.take(self.batch_size):
            y, x, flip = self._window(i)
            sources = [self.images.photos[i]]
            if self.images.targets is not None:
                sources.append(self.images.targets[i])
            if self.smoothed is not None:
                sources.append(self.smoothed[i])
            for column, image in zip(columns, sources, strict=False):
                crop = image[y : y + s, x : x + s]
                column.append(crop[:, ::-1] if flip else crop)
        photo, target, smooth = (
            to_tensor_color(np.ascontiguousarray(np.stack(c))) if c else None for c in columns
        )
        return PairBatch(photo, target, smooth)

    def center_crops(self, count: int) -> PairBatch:
        """Fixed (count, 3, S, S) center crops of the first images: the sample grid's inputs."""
        s, photos, targets = self.image_size, [], []
        for i in range(min(count, len(self.images))):
            h, w = self.images.photos[i].shape[:2]
            y, x = (h - s) // 2, (w - s) // 2
            photos.append(self.images.photos[i][y : y + s, x : x + s])
            if self.images.targets is not None:
                targets.append(self.images.targets[i][y : y + s, x : x + s])
        if not photos:
            return PairBatch(torch.empty(0, 3, s, s), None)
        photo = to_tensor_color(np.ascontiguousarray(np.stack(photos)))
        return PairBatch(photo, to_tensor_color(np.ascontiguousarray(np.stack(targets))) if targets else None)

    def state_dict(self) -> dict:
        return {"pairs": self.stream.state_dict(), "crops": self.crops.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["pairs"])
        self.crops.set_state(state["crops"])
