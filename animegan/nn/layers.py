"""Building blocks shared by the generators: TF1 legacy bilinear resize, padding, conv/norm/LReLU blocks.

Tensors are (B, C, H, W). The blocks follow the TF reference code (spec §1.3, §2.2) and the port's module layout.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
# Padding (left, right, top, bottom) of TF stride-2 convs in the generators: bottom/right only.
STRIDE2_PAD = (0, 1, 0, 1)
# Smallest side the generators run natively: four levels of reflect padding need >= 2 px at H/4.
MIN_NATIVE_SIDE = 8


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _upsample2_legacy(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Exact x2 of TF legacy resize along `dim`: out[2i] = in[i], out[2i+1] = lerp(in[i], in[i+1], 0.5), edge clamped.

    Works on the memory-order view (NHWC for channels-last) so the interleaving stack writes one contiguous
    tensor in the input's memory format.
    """
    channels_last = _is_channels_last(x)
    view = x.permute(0, 2, 3, 1) if channels_last else x
    d = dim - 1 if channels_last else dim
    n = view.shape[d]
    nxt = torch.cat([view.narrow(d, 1, n - 1), view.narrow(d, n - 1, 1)], dim=d)
    out = torch.stack([view, torch.lerp(view, nxt, 0.5)], dim=d + 1).flatten(d, d + 1)
    return out.permute(0, 3, 1, 2) if channels_last else out


def _resize_legacy_dim(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    """TF1 `resize_bilinear(align_corners=False, half_pixel_centers=False)` along one dimension."""
    in_size = x.shape[dim]
    if out_size == in_size:
        return x
    if out_size == 2 * in_size:
        return _upsample2_legacy(x, dim)
    if 2 * out_size == in_size:
        # src = 2 * dst lands on whole pixels: the lerp weight is 0 everywhere.
        index = [slice(None)] * x.dim()
        index[dim] = slice(0, None, 2)
        return x[tuple(index)]
    # General case: src = dst * in/out (float32, as TF computes it), floor + lerp, upper index clamped.
    scale = in_size / out_size
    src = torch.arange(out_size, device=x.device, dtype=torch.float32) * scale
    lo = src.floor().clamp(max=in_size - 1)
    frac = (src - lo).to(x.dtype)
    lo = lo.long()
    hi = (lo + 1).clamp(max=in_size - 1)
    view = [1] * x.dim()
    view[dim] = out_size
    return torch.lerp(x.index_select(dim, lo), x.index_select(dim, hi), frac.view(view))


def tf_legacy_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) exactly as TF1 `tf.image.resize_images` (legacy sampling, no half pixels).

    PyTorch's align_corners=False uses half-pixel centres and does not match (spec §1.3); W is interpolated
    first, then H, which is TF's order of lerps.
    """
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"tf_legacy_resize: target size {size} must be >= 1 on both sides")
    return _resize_legacy_dim(_resize_legacy_dim(x, 3, out_w), 2, out_h)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Bilinear resize to `size` in one of the GeneratorConfig.upsample modes.

    "scale_factor" is the port's `F.interpolate(scale_factor=2, align_corners=False)`: with exact factors the
    size-based call computes the same coordinates (src = (dst + 0.5) * in/out - 0.5).
    """
    if mode == "tf_legacy":
        return tf_legacy_resize(x, size)
    if mode == "align_corners":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    if mode == "scale_factor":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    raise ValueError(f"resize: unknown mode {mode!r}; use tf_legacy, align_corners or scale_factor")


def pad_to_native(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right so H and W are multiples of `multiple` and >= MIN_NATIVE_SIDE (caller crops back).

    Reflect keeps image statistics at the border (what instance/layer norm see); it needs pad < side, so
    tiny inputs (1-4 px) fall back to replicate.
    """
    h, w = x.shape[-2:]
    th = max(MIN_NATIVE_SIDE, -(-h // multiple) * multiple)
    tw = max(MIN_NATIVE_SIDE, -(-w // multiple) * multiple)
    if (th, tw) == (h, w):
        return x
    mode = "reflect" if th - h < h and tw - w < w else "replicate"
    return F.pad(x, (0, tw - w, 0, th - h), mode=mode)


class ReflectionPad2d(nn.ReflectionPad2d):
    """nn.ReflectionPad2d that keeps its input dtype under autocast.

    Autocast lists reflection_pad2d as an fp32 op: every bf16 activation would be cast up before the pad and
    back down by the next conv. Padding is exact in any dtype, so autocast is switched off around it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm that keeps a bf16/fp16 input in its dtype under autocast (same parameters and keys).

    Autocast runs group_norm in fp32, which costs a cast before and after every norm (a third of the bf16
    forward time at 512 px); the CPU/CUDA kernels accumulate the statistics in fp32 for low-precision inputs
    anyway. Outside autocast, or for fp32 inputs, this is plain nn.GroupNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 or not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            weight = self.weight.to(x.dtype) if self.weight is not None else None
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)


def norm_layer(kind: str, channels: int, eps: float) -> nn.Module:
    """ "layer": TF contrib layer_norm = GroupNorm(1, C). "instance": affine IN written as GroupNorm(C, C).

    GroupNorm(C, C) is the same computation as InstanceNorm2d(affine=True) with the same weight/bias keys, and
    has a faster CPU kernel that keeps channels-last.
    """
    if kind == "layer":
        return GroupNorm(1, channels, eps=eps, affine=True)
    if kind == "instance":
        return GroupNorm(channels, channels, eps=eps, affine=True)
    raise ValueError(f"norm_layer: unknown kind {kind!r}; use 'layer' or 'instance'")


class ConvNormLReLU(nn.Sequential):
    """[0] reflect pad, [1] conv (no padding), [2] norm, [3] LeakyReLU(0.2): the port's module layout and keys."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | tuple[int, int, int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        norm: str = "layer",
        eps: float = 1e-5,
    ) -> None:
        super().__init__(
            ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            norm_layer(norm, out_ch, eps),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
        )


class SeparableConv(nn.Sequential):
    """v1 `Separable_conv2d`: reflect pad -> depthwise 3x3 -> pointwise 1x1 -> IN(eps 1e-6) -> LReLU.

    The TF code has no norm or activation between depthwise and pointwise (paper Fig. 3b differs); stride 2
    pads bottom/right only.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, eps: float = 1e-6) -> None:
        super().__init__(
            OrderedDict(
                pad=ReflectionPad2d(STRIDE2_PAD if stride == 2 else 1),
                depthwise=nn.Conv2d(in_ch, in_ch, 3, stride=stride, groups=in_ch, bias=False),
                pointwise=nn.Conv2d(in_ch, out_ch, 1, bias=False),
                norm=norm_layer("instance", out_ch, eps),
                act=nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            )
        )


class InvertedResBlock(nn.Module):
    """IRB: 1x1 expand (norm, LReLU) -> depthwise 3x3 (norm, LReLU) -> 1x1 project -> norm; residual if in == out.

    `layers` indices [0..3] match the port's keys; v1 has no depthwise bias, v2 has one.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        expansion: int = 2,
        norm: str = "layer",
        eps: float = 1e-5,
        dw_bias: bool = True,
    ) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.use_residual = in_ch == out_ch
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, mid, kernel_size=1, padding=0, norm=norm, eps=eps),
            ConvNormLReLU(mid, mid, groups=mid, bias=dw_bias, norm=norm, eps=eps),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            norm_layer(norm, out_ch, eps),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.use_residual else out


def native_multiple(upsample: str) -> int:
    """Side multiple the reference graph handles: x2 resizes back from H/4 restore H only if 4 | H.

    align_corners resizes to the recorded skip sizes (the port's hub path), so any side works.
    """
    return 1 if upsample == "align_corners" else 4


def check_image_batch(x: torch.Tensor, who: str) -> None:
    """Entry-point shape check: (B, 3, H, W) floating point."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(
            f"{who}: expected a float tensor (B, 3, H, W) in [-1, 1], got {tuple(x.shape)} {x.dtype}"
        )
