"""Tiled inference for large images: overlapping tiles, feathered blending, image-wide norm statistics.

The generators normalise over each whole feature map (v2 layer norm, v1 instance norm), so a tile alone would
get its own statistics and its own tone. We record the statistics once on a downscaled copy of the whole image
and replay them in every tile; tiles then differ from one untiled pass only near their borders, which the
overlap blend hides. Memory: one tile's activations plus an (H, W, 3) float32 accumulator.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

# Both generators downsample twice by 2, so tiles start and end on multiples of 4 to keep the grids aligned.
ALIGN = 4
NORM_TYPES = (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), neighbours overlapping by >= `overlap`."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # the last tile ends at the border (it overlaps its neighbour more)
    return starts


def blend_weights(starts: list[int], tile: int, length: int) -> list[np.ndarray]:
    """Per-tile 1-D weights summing to 1 over the tiles: across each overlap of r pixels, the outer quarter
    next to a tile's edge gets weight 0 (its output there lacks context), the middle half a linear cross-fade.
    """
    weights = []
    for i, start in enumerate(starts):
        w = np.ones(min(tile, length), dtype=np.float32)
        if i > 0:
            w[: starts[i - 1] + tile - start] = _ramp(starts[i - 1] + tile - start)
        if i < len(starts) - 1:
            r = start + tile - starts[i + 1]
            w[tile - r :] = np.minimum(w[tile - r :], _ramp(r)[::-1])
        weights.append(w)
    return weights


def _ramp(r: int) -> np.ndarray:
    """Rising weights over an overlap of r pixels: 0 for r//4, linear over the middle, 1 for the last r//4."""
    q = r // 4
    k = np.arange(r, dtype=np.float32)
    return np.clip((k + 0.5 - q) / (r - 2 * q), 0.0, 1.0)


class FixedStatsNorm(nn.Module):
    """A norm layer whose per-channel statistics are set from outside (inference batch norm, B broadcast)."""

    def __init__(self, norm: nn.Module, channels: int):
        super().__init__()
        self.eps = float(norm.eps)
        affine = getattr(norm, "weight", None) is not None
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))
        self.register_buffer(
            "weight", norm.weight.detach().float().clone() if affine else torch.ones(channels)
        )
        self.register_buffer("bias", norm.bias.detach().float().clone() if affine else torch.zeros(channels))

    def set_stats(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """(C,) float32 mean and biased variance, as the replaced norm computed them on the whole image."""
        # In place, so a torch.compile'd tile model keeps its buffers and needs no recompile.
        self.mean.copy_(mean)
        self.var.copy_(var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inference batch norm is exactly (x - mean) / sqrt(var + eps) * weight + bias per channel, and one of
        # the fastest kernels for it on CPU and GPU (bf16 input with fp32 statistics included).
        return F.batch_norm(x, self.mean, self.var, self.weight, self.bias, False, 0.0, self.eps)


def _channels(norm: nn.Module) -> int:
    return norm.num_features if isinstance(norm, nn.modules.instancenorm._InstanceNorm) else norm.num_channels


def _channel_stats(norm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C,) mean and biased variance per channel of sample 0, as `norm` computes them over its groups."""
    x = x[:1].float()
    c = x.shape[1]
    if not isinstance(norm, nn.modules.instancenorm._InstanceNorm):  # GroupNorm, ReductionGroupNorm
        g = norm.num_groups
        grouped = x.reshape(1, g, -1)
        var, mean = torch.var_mean(grouped, dim=2, unbiased=False)
        return mean.repeat_interleave(c // g, dim=1)[0], var.repeat_interleave(c // g, dim=1)[0]
    var, mean = torch.var_mean(x.reshape(1, c, -1), dim=2, unbiased=False)
    return mean[0], var[0]


class ReductionGroupNorm(nn.Module):
    """GroupNorm computed with torch.var_mean: the same numbers, but CUDA's GroupNorm kernel reduces each
    (sample, group) row in one thread block, so GroupNorm(1, C) on a 1024 px map took 500 ms on an H200."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.num_groups, self.num_channels, self.eps = norm.num_groups, norm.num_channels, float(norm.eps)
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        var, mean = torch.var_mean(x.float().reshape(b, self.num_groups, -1), dim=2, unbiased=False)
        rstd = torch.rsqrt(var + self.eps).repeat_interleave(c // self.num_groups, dim=1)  # (B, C)
        mean = mean.repeat_interleave(c // self.num_groups, dim=1)
        scale = rstd if self.weight is None else rstd * self.weight.float()
        shift = -mean * scale if self.bias is None else self.bias.float() - mean * scale
        return torch.addcmul(shift[:, :, None, None].to(x.dtype), x, scale[:, :, None, None].to(x.dtype))


def swap_norms(model: nn.Module, make: Callable[[nn.Module], nn.Module], types: tuple = NORM_TYPES) -> list:
    """Replace every norm layer of `types` in `model`, in place, by make(norm); returns the new modules."""
    made = []
    for name, module in list(model.named_modules()):
        if isinstance(module, types):
            new = make(module)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
            made.append(new)
    return made


class TileModel:
    """A copy of a generator whose norm layers replay statistics recorded on the whole (downscaled) image."""

    def __init__(self, model: nn.Module):
        self.source = model
        types = (*NORM_TYPES, ReductionGroupNorm)
        self.norms = [m for m in model.modules() if isinstance(m, types)]
        self.model = copy.deepcopy(model)
        device = next(self.model.parameters()).device
        self.fixed: list[FixedStatsNorm] = swap_norms(
            self.model, lambda norm: FixedStatsNorm(norm, _channels(norm)).to(device), types
        )
        self.needs_stats = bool(self.norms)
        if not self.norms:
            logger.warning(
                "the generator has no GroupNorm/InstanceNorm layers; tiles run without shared statistics"
            )

    @contextmanager
    def recording(self) -> Iterator[None]:
        """While active, a forward pass of the source model stores its norm statistics in the tile model."""

        def hook(index: int) -> Callable:
            def record(module: nn.Module, args: tuple) -> None:
                mean, var = _channel_stats(module, args[0])
                self.fixed[index].set_stats(mean, var)

            return record

        handles = [norm.register_forward_pre_hook(hook(i)) for i, norm in enumerate(self.norms)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class UnsharedTiles:
    """Tiles of a model whose norm layers cannot be reached (an ONNX graph): each tile normalises over itself,
    so tiles may differ in tone where the torch path replays image-wide statistics; the overlap blend hides
    the seams, not a drift."""

    needs_stats = False

    def __init__(self, model: nn.Module):
        self.source = self.model = model

    @contextmanager
    def recording(self) -> Iterator[None]:
        yield


def run_tiled(
    image: np.ndarray,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    tile_model: TileModel | UnsharedTiles,
    tile: int,
    overlap: int,
    stats_side: int,
    device: torch.device,
) -> np.ndarray:
    """Stylize an (H, W, 3) uint8 image (H, W multiples of 4) tile by tile; returns (H, W, 3) uint8.

    `forward(module, x)` runs a module on (B, 3, h, w) in [-1, 1] and returns float32 in [-1, 1];
    the statistics pass runs the source model on the image downscaled to at most `stats_side` per side.
    """
    h, w = image.shape[:2]
    tile = max(ALIGN, tile - tile % ALIGN)
    overlap = min(max(ALIGN, overlap - overlap % ALIGN), tile // 2)
    if tile_model.needs_stats:
        scale = min(1.0, stats_side / max(h, w))
        small = image
        if scale < 1.0:
            sh = max(ALIGN, round(h * scale / ALIGN) * ALIGN)
            sw = max(ALIGN, round(w * scale / ALIGN) * ALIGN)
            small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        with tile_model.recording():
            forward(tile_model.source, to_tensor(small, device))
        del small

    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    wy, wx = blend_weights(ys, tile, h), blend_weights(xs, tile, w)
    acc = np.zeros((h, w, 3), dtype=np.float32)  # weighted sum of tile outputs, in [-1, 1] units
    for y0, row_w in zip(ys, wy, strict=True):
        for x0, col_w in zip(xs, wx, strict=True):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            out = forward(tile_model.model, to_tensor(image[y0:y1, x0:x1], device))
            weight = row_w[:, None, None] * col_w[None, :, None]
            acc[y0:y1, x0:x1] += out[0].permute(1, 2, 0).cpu().numpy() * weight
    # The blend weights are separable, so their sum over tiles is the outer product of the per-axis sums.
    norm_y, norm_x = _coverage(ys, wy, h), _coverage(xs, wx, w)
    result = np.empty((h, w, 3), dtype=np.uint8)
    for r in range(0, h, 256):  # in bands, to keep temporaries small
        band = acc[r : r + 256] / (norm_y[r : r + 256, None, None] * norm_x[None, :, None])
        result[r : r + 256] = np.clip(np.rint((band + 1.0) * 127.5), 0, 255).astype(np.uint8)
    logger.debug("tiled %dx%d in %d tiles of %d (overlap %d)", w, h, len(ys) * len(xs), tile, overlap)
    return result


def _coverage(starts: list[int], weights: list[np.ndarray], length: int) -> np.ndarray:
    total = np.zeros(length, dtype=np.float32)
    for start, w in zip(starts, weights, strict=True):
        total[start : start + len(w)] += w
    return total


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) or (B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [-1, 1] (x / 127.5 - 1, as the reference)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # views of PIL images are read-only; torch wants to own writable memory
        array = array.copy()
    t = torch.from_numpy(array).to(device)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
