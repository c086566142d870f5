"""Image similarity: PSNR and SSIM, as a differentiable torch function (a loss term) and on uint8 images.

SSIM is Wang et al. 2004 as most tools compute it (an 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid
region only, mean over channels and pixels), so figures compare with skimage's `gaussian_weights=True` setting.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@functools.cache
def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable depthwise Gaussian filter over (B, C, H, W), valid region only."""
    c = x.shape[1]
    k = window.to(x.dtype).to(x.device)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Per-pixel SSIM of (B, C, H, W) images with values spanning `data_range`; (B, C, H-10, W-10)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW} px a side, got {tuple(x.shape[-2:])}")
    window = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM (0-dim, differentiable); the default range is that of the [-1, 1] images G works in."""
    return ssim_map(x, y, data_range).mean()


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 images of one size (inf when they are equal)."""
    if a.shape != b.shape:
        raise ValueError(f"psnr needs images of one size, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 images of one size, on the 0-255 scale, in float64.

    The same formula as `ssim`, with OpenCV's separable filter (fast on megapixel images; torch's float64
    grouped convolution is not) cropped to the valid region, as the convolution there is.
    """
    if a.shape != b.shape or a.ndim != 3 or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"ssim needs two (H, W, 3) uint8 images of one size, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW} px a side, got {a.shape[:2]}")
    k = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA).numpy()
    r = SSIM_WINDOW // 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(img, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())
