"""AnimeGAN (v1) generator exactly as the TF code builds it (AG1 net/generator.py, spec §1.3), plus the
mapping of its parameters onto the 129 tensors of the released TF checkpoint (rename + transpose).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from animegan.config import GeneratorConfig
from animegan.nn.layers import (
    ConvNormLReLU,
    InvertedResBlock,
    SeparableConv,
    check_image_batch,
    native_multiple,
    pad_to_native,
    resize,
)
from animegan.nn.tf_names import (
    CONV,
    DEPTHWISE,
    TF_SCOPE,
    VariableMap,
    conv_block,
    convert,
    inverted_res_block,
    suffix,
)

# ops.instance_norm epsilon of the Conv-Blocks and IRBs; the separable convs use contrib's 1e-6.
BLOCK_EPS = 1e-5
N_IRB = 8


def _cnl(cin: int, cout: int, kernel_size: int = 3) -> ConvNormLReLU:
    return ConvNormLReLU(
        cin, cout, kernel_size, padding=1 if kernel_size == 3 else 0, norm="instance", eps=BLOCK_EPS
    )


class DownConv(nn.Module):
    """TF `Separable_conv2d(x, f, strides=2) + Downsample(x, f)`; Downsample = resize to (H//2, W//2) + sep conv."""

    def __init__(self, in_ch: int, out_ch: int, upsample: str) -> None:
        super().__init__()
        self.upsample = upsample
        self.strided = SeparableConv(in_ch, out_ch, stride=2)
        self.resized = SeparableConv(in_ch, out_ch, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.strided(x) + self.resized(resize(x, (h // 2, w // 2), self.upsample))


class GeneratorV1(nn.Module):
    """Photo (B, 3, H, W) in [-1, 1] -> anime (B, 3, H, W) in [-1, 1]; 3,956,096 parameters at base 64."""

    # Submodules a reduced-precision fast path keeps in fp32 (Stylizer). Every later per-channel norm
    # re-amplifies rounding made early, so the full-resolution encoder b1 causes about half of the bf16 output
    # error: fp32 there lifts PSNR vs fp32 from 33-34 dB to 36-37 dB on photos for ~10% more time at 512 px on
    # an AVX512-BF16 CPU (bench/RESULTS.md, "v1 precision").
    fp32_submodules: tuple[str, ...] = ("b1",)

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        if config.arch != "v1":
            raise ValueError(f"GeneratorV1 needs arch='v1', got config.arch={config.arch!r}")
        self.config = config
        c = config.base_channels  # 64 in the reference: widths 64, 128, 256, 512 (IRB expansion)
        mode = config.upsample
        self.b1 = nn.Sequential(_cnl(3, c), _cnl(c, c), DownConv(c, 2 * c, mode))
        self.b2 = nn.Sequential(_cnl(2 * c, 2 * c), SeparableConv(2 * c, 2 * c), DownConv(2 * c, 4 * c, mode))
        irbs = [
            InvertedResBlock(4 * c, 4 * c, 2, norm="instance", eps=BLOCK_EPS, dw_bias=False)
            for _ in range(N_IRB)
        ]
        self.m = nn.Sequential(_cnl(4 * c, 4 * c), *irbs, _cnl(4 * c, 4 * c))
        # u2[0] / u1[0] are the separable convs of TF `Unsample` (applied after the x2 resize in forward).
        self.u2 = nn.Sequential(SeparableConv(4 * c, 2 * c), SeparableConv(2 * c, 2 * c), _cnl(2 * c, 2 * c))
        # 128 channels after the last Unsample follow the code; the paper figure says 64 (spec §1.3).
        self.u1 = nn.Sequential(SeparableConv(2 * c, 2 * c), _cnl(2 * c, c), _cnl(c, c))
        self.out_layer = nn.Sequential(nn.Conv2d(c, 3, 1, bias=False), nn.Tanh())
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """TF init: contrib conv2d default (Xavier uniform); IRB depthwise truncated normal std 0.02."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
        for block in self.m[1 : N_IRB + 1]:
            nn.init.trunc_normal_(block.layers[1][1].weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "GeneratorV1")
        h, w = x.shape[-2:]
        # Sides the reference graph cannot run (not a multiple of 4 for the x2 resizes, or < 8 px for the
        # reflect pads at H/4) are padded bottom/right here and cropped back below; other sizes run as-is.
        x = pad_to_native(x, native_multiple(self.config.upsample))
        b1 = self.b1(x)
        out = self.m(self.b2(b1))
        out = self.u2(resize(out, b1.shape[-2:], self.config.upsample))
        out = self.u1(resize(out, x.shape[-2:], self.config.upsample))
        out = self.out_layer(out)
        return out[..., :h, :w]


# --- TF checkpoint mapping (animegan/nn/tf_names.py) -------------------------------------------------------
# In `Separable(s2) + Downsample` Python builds the left operand first, so `strided` is SeparableConv2d_k and
# `resized` SeparableConv2d_{k+1}. IRB r{i}: Conv (expand) + InstanceNorm, r{i}/w (depthwise), `1` (its IN),
# Conv_1 (project), `2` (its IN).


def _cnl_names(key: str, scope: str, i: int, out: VariableMap) -> None:
    conv_block(out, key, scope, i, "InstanceNorm")


def _sep_names(key: str, scope: str, i: int, out: VariableMap) -> None:
    tf = f"{scope}/SeparableConv2d{suffix(i)}"
    out[f"{key}.depthwise.weight"] = (f"{tf}/depthwise_weights", DEPTHWISE)
    out[f"{key}.pointwise.weight"] = (f"{tf}/pointwise_weights", CONV)
    out[f"{key}.norm.weight"] = (f"{tf}/InstanceNorm/gamma", None)
    out[f"{key}.norm.bias"] = (f"{tf}/InstanceNorm/beta", None)


def _irb_names(key: str, scope: str, out: VariableMap) -> None:
    inverted_res_block(out, key, scope, "InstanceNorm", dw_bias=False)


def tf_variable_map() -> VariableMap:
    """state_dict key -> (TF checkpoint variable name, permutation from the TF layout or None)."""
    s = TF_SCOPE
    out: VariableMap = {}
    _cnl_names("b1.0", f"{s}/b1", 0, out)
    _cnl_names("b1.1", f"{s}/b1", 1, out)
    _sep_names("b1.2.strided", f"{s}/b1", 0, out)
    _sep_names("b1.2.resized", f"{s}/b1", 1, out)
    _cnl_names("b2.0", f"{s}/b2", 0, out)
    _sep_names("b2.1", f"{s}/b2", 0, out)
    _sep_names("b2.2.strided", f"{s}/b2", 1, out)
    _sep_names("b2.2.resized", f"{s}/b2", 2, out)
    _cnl_names("m.0", f"{s}/m", 0, out)
    for i in range(1, N_IRB + 1):
        _irb_names(f"m.{i}", f"{s}/m/r{i}", out)
    _cnl_names(f"m.{N_IRB + 1}", f"{s}/m", 1, out)
    _sep_names("u2.0", f"{s}/u2", 0, out)
    _sep_names("u2.1", f"{s}/u2", 1, out)
    _cnl_names("u2.2", f"{s}/u2", 0, out)
    _sep_names("u1.0", f"{s}/u1", 0, out)
    _cnl_names("u1.1", f"{s}/u1", 0, out)
    _cnl_names("u1.2", f"{s}/u1", 1, out)
    out["out_layer.0.weight"] = (f"{s}/Conv/weights", CONV)
    return out


def state_dict_from_tf(tf_tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert the generator tensors of a TF v1 checkpoint (name -> array, TF layout) to a GeneratorV1
    state dict. Extra TF variables (optimizer slots, discriminator) are ignored."""
    return convert(tf_tensors, tf_variable_map(), "AnimeGAN v1 generator")
