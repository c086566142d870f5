"""Style statistics of (H, W, 3) uint8 RGB images: how much an output looks like its target beyond PSNR/SSIM.

Definitions fixed by the style-strength issue, so figures compare across sessions and tools:
- luma Y = 0.299 R + 0.587 G + 0.114 B on 0..255;
- outline energy: mean of the morphological black-hat of Y (closing minus Y), 5x5 elliptical element: dark thin
  lines score high, flat areas and soft gradients score ~0;
- outline correlation: Pearson correlation of two images' black-hat maps (are the lines in the same places);
- colourfulness: Hasler and Suesstrunk 2003 on rg = R - G, yb = (R + G) / 2 - B;
- GMSD: standard deviation over the image of the gradient magnitude similarity of two images' Y / 255 (3x3
  Sobel, unnormalised kernels, c = 0.0416); lower is closer;
- tone-aligned PSNR: PSNR after a per-channel least-squares affine map of the output onto the target.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import cv2
import numpy as np

LUMA = (0.299, 0.587, 0.114)
GMSD_C = 0.0416


@functools.cache
def _ellipse_5x5() -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _check(image: np.ndarray, what: str = "image") -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
    return image


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    _check(a, "the first image")
    _check(b, "the second image")
    if a.shape != b.shape:
        raise ValueError(f"the two images differ in size: {a.shape} and {b.shape}")


def luma(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 Y on 0..255."""
    rgb = _check(image).astype(np.float32)
    return LUMA[0] * rgb[..., 0] + LUMA[1] * rgb[..., 1] + LUMA[2] * rgb[..., 2]


def blackhat(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 black-hat of Y (closing - Y, >= 0): the dark lines narrower than the 5x5 element."""
    return cv2.morphologyEx(luma(image), cv2.MORPH_BLACKHAT, _ellipse_5x5())


def outline_energy(image: np.ndarray) -> float:
    return float(blackhat(image).mean(dtype=np.float64))


def outline_correlation(output: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation of the black-hat maps (0 where either map is constant)."""
    _same_shape(output, target)
    a = blackhat(output).astype(np.float64).ravel()
    b = blackhat(target).astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def colourfulness(image: np.ndarray) -> float:
    rgb = _check(image).astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    spread = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    offset = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(spread + 0.3 * offset)


def _gradient_magnitude(y: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(y, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_64F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def gmsd(output: np.ndarray, target: np.ndarray) -> float:
    _same_shape(output, target)
    m1 = _gradient_magnitude(luma(output).astype(np.float64) / 255)
    m2 = _gradient_magnitude(luma(target).astype(np.float64) / 255)
    gms = (2 * m1 * m2 + GMSD_C) / (m1 * m1 + m2 * m2 + GMSD_C)
    return float(gms.std())


def tone_aligned_psnr(output: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB, 0..255) of a * output + b against the target, a and b fitted per channel by least squares."""
    _same_shape(output, target)
    squared_error = 0.0
    for c in range(3):
        x = output[..., c].astype(np.float64).ravel()
        y = target[..., c].astype(np.float64).ravel()
        var_x = x.var()
        a = ((x - x.mean()) * (y - y.mean())).mean() / var_x if var_x > 0 else 0.0
        b = y.mean() - a * x.mean()
        squared_error += float(((a * x + b - y) ** 2).sum())
    mse = squared_error / output.size
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@dataclass
class StyleStats:
    """The statistics of one image against a target (the pair ones are None without a target)."""

    outline_energy: float
    colourfulness: float
    outline_corr: float | None = None
    gmsd: float | None = None
    tone_psnr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def style_stats(image: np.ndarray, target: np.ndarray | None = None) -> StyleStats:
    if target is None:
        return StyleStats(outline_energy(image), colourfulness(image))
    return StyleStats(
        outline_energy(image),
        colourfulness(image),
        outline_correlation(image, target),
        gmsd(image, target),
        tone_aligned_psnr(image, target),
    )
