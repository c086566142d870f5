"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): random colour,
translation and cutout applied to every image D sees, real and generated alike, in D's step and in G's, so D
cannot memorise a small training set and G still gets gradients through the augmentation.

The images given together get the same random parameters per sample index, so a target and the output of its
photo stay aligned (feature matching compares them position by position). Draws use torch's global RNG, which
checkpoints capture, so a resumed run augments exactly as the uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125  # largest shift, as a fraction of the side (the paper's value)
CUTOUT_RATIO = 0.5  # side of the erased square, as a fraction of the image side (the paper's value)


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> its parts; '' -> (); an unknown part raises ValueError naming it."""
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in parts if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: {', '.join(POLICIES)}")
    return parts


def diff_augment(images: list[torch.Tensor], policy: tuple[str, ...]) -> list[torch.Tensor]:
    """Augment each (B, 3, H, W) tensor in [-1, 1] of `images` (all of one shape) with shared parameters."""
    if not policy or not images:
        return images
    b, _, h, w = images[0].shape
    for t in images:
        if t.shape != images[0].shape:
            raise ValueError(f"diff_augment: images of one shape needed, got {t.shape} and {images[0].shape}")
    device = images[0].device
    out = list(images)
    if "color" in policy:
        brightness = torch.rand(b, 1, 1, 1, device=device) - 0.5
        saturation = torch.rand(b, 1, 1, 1, device=device) * 2
        contrast = torch.rand(b, 1, 1, 1, device=device) + 0.5
        out = [_color(x, brightness, saturation, contrast) for x in out]
    if "translation" in policy:
        sy, sx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
        dy = torch.randint(-sy, sy + 1, (b,), device=device)
        dx = torch.randint(-sx, sx + 1, (b,), device=device)
        out = [_translate(x, dy, dx) for x in out]
    if "cutout" in policy:
        ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
        cy = torch.randint(0, h + (1 - ch % 2), (b,), device=device)
        cx = torch.randint(0, w + (1 - cw % 2), (b,), device=device)
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        inside = (
            (ys >= (cy - ch // 2).view(b, 1, 1))
            & (ys < (cy - ch // 2 + ch).view(b, 1, 1))
            & (xs >= (cx - cw // 2).view(b, 1, 1))
            & (xs < (cx - cw // 2 + cw).view(b, 1, 1))
        )
        keep = (~inside).unsqueeze(1)
        out = [x * keep.to(x.dtype) for x in out]
    return out


def _color(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor):
    x = x + brightness.to(x.dtype)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * saturation.to(x.dtype) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast.to(x.dtype) + mean


def _translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Shift each sample by (dy, dx) pixels, filling with zeros (mid-grey in [-1, 1])."""
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    ys = (torch.arange(h, device=x.device).view(1, h, 1) - dy.view(b, 1, 1) + 1).clamp(0, h + 1)
    xs = (torch.arange(w, device=x.device).view(1, 1, w) - dx.view(b, 1, 1) + 1).clamp(0, w + 1)
    index = (ys * (w + 2) + xs).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)
