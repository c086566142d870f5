"""Edge smoothing of style images (AnimeGAN `tools/edge_smooth.py`) and its on-disk cache.

D learns that anime images with blurred edges are fake, which pushes G towards crisp anime line art.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from animegan.atomic import atomic_write

logger = logging.getLogger(__name__)

CANNY_LOW = 100  # cv2.Canny thresholds of the reference
CANNY_HIGH = 200
KERNEL_SIZE = 5  # dilation and Gaussian kernel side of the reference
# The reference assigns a float sum into a uint8 array (truncation). A uniform patch sums to 99.999...
# or 100.000... depending on summation order, so a tiny guard keeps the result independent of it.
TRUNCATION_GUARD = 1e-6
# Bump when the algorithm changes so stale cache entries are never reused.
CACHE_VERSION = 1


def gaussian_kernel_2d(size: int = KERNEL_SIZE) -> np.ndarray:
    """The reference kernel: outer product of cv2.getGaussianKernel(size, 0) with itself, float64."""
    g = cv2.getGaussianKernel(size, 0)
    return g @ g.T


def edge_mask(rgb: np.ndarray) -> np.ndarray:
    """Dilated Canny edges of an (H, W, 3) uint8 RGB image -> (H, W) bool, True on the pixels to smooth."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # RGB weights, not the R/B swap of some ports
    edges = cv2.Canny(gray, CANNY_LOW, CANNY_HIGH)
    dilated = cv2.dilate(edges, np.ones((KERNEL_SIZE, KERNEL_SIZE), np.uint8))
    return dilated != 0


def smooth_edges(rgb: np.ndarray) -> np.ndarray:
    """Edge-smoothed copy of an (H, W, 3) uint8 RGB image, exactly the reference algorithm (vectorised).

    Every pixel of the dilated edge mask becomes the 5x5 Gaussian average of the reflect-padded image
    (np.pad mode 'reflect' = cv2.BORDER_REFLECT_101), truncated to uint8; all other pixels are unchanged.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"smooth_edges expects an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    mask = edge_mask(rgb)
    # The kernel is symmetric, so filter2D's correlation equals the reference's window sum.
    blurred = cv2.filter2D(
        rgb.astype(np.float64), -1, gaussian_kernel_2d(), borderType=cv2.BORDER_REFLECT_101
    )
    out = rgb.copy()
    out[mask] = np.floor(blurred[mask] + TRUNCATION_GUARD).astype(np.uint8)
    return out


def touch(path: Path) -> None:
    """Mark a cache entry as just used: a caller that bounds the folder removes the least recently used first."""
    with contextlib.suppress(OSError):  # removed by such a caller in the meantime; it was read already
        os.utime(path)


class SmoothCache:
    """Edge-smoothed images on disk, keyed by the source file's content hash and the training size.

    A changed file has a new hash and is recomputed; entries are PNG (lossless) so reuse is exact.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.hits = 0  # entries served from disk since construction
        self.misses = 0  # entries computed since construction

    def key(self, digest: str, size: int) -> str:
        return f"{digest[:40]}-{size}-v{CACHE_VERSION}"

    def get_or_compute(self, digest: str, size: int, rgb: np.ndarray) -> np.ndarray:
        """Smoothed RGB (H, W, 3) uint8 of `rgb`, the resized image of the file whose sha256 is `digest`."""
        path = self.directory / f"{self.key(digest, size)}.png"
        if path.is_file():
            try:
                with Image.open(path) as img:
                    cached = np.asarray(img.convert("RGB"))
            except (OSError, ValueError) as exc:
                logger.warning("unreadable smooth-cache entry %s (%s); recomputing it", path, exc)
            else:
                if cached.shape == rgb.shape:
                    self.hits += 1
                    touch(path)
                    return cached
                logger.warning(
                    "smooth-cache entry %s has shape %s, expected %s; recomputing it",
                    path,
                    cached.shape,
                    rgb.shape,
                )
        smoothed = smooth_edges(rgb)
        self.misses += 1
        self._write(path, smoothed)
        return smoothed

    def _write(self, path: Path, rgb: np.ndarray) -> None:
        with atomic_write(path) as f:  # a concurrent reader never sees half a PNG
            Image.fromarray(rgb).save(f, format="PNG")
