"""AnimeGANv2 generator (AG2 net/generator.py), with the module layout and state-dict keys of the public
PyTorch port (bryandlee/animegan2-pytorch model.py, spec §4.1), so the port's .pt files load with strict=True.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from animegan.config import GeneratorConfig
from animegan.nn.layers import (
    STRIDE2_PAD,
    ConvNormLReLU,
    InvertedResBlock,
    check_image_batch,
    native_multiple,
    pad_to_native,
    resize,
)
from animegan.nn.tf_names import CONV, TF_SCOPE, VariableMap, conv_block, convert, inverted_res_block


class GeneratorV2(nn.Module):
    """Photo (B, 3, H, W) in [-1, 1] -> anime (B, 3, H, W) in [-1, 1]; 2,143,552 parameters at base 32."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        if config.arch != "v2":
            raise ValueError(f"GeneratorV2 needs arch='v2', got config.arch={config.arch!r}")
        self.config = config
        c = config.base_channels  # 32 in the reference: widths 32, 64, 128, 256 (IRB), 512 (IRB expansion)

        def cnl(cin: int, cout: int, **kw) -> ConvNormLReLU:
            return ConvNormLReLU(cin, cout, norm="layer", eps=config.norm_eps, **kw)

        def irb(cin: int, cout: int) -> InvertedResBlock:
            return InvertedResBlock(cin, cout, expansion=2, norm="layer", eps=config.norm_eps, dw_bias=True)

        self.block_a = nn.Sequential(
            cnl(3, c, kernel_size=7, padding=3),
            cnl(c, 2 * c, stride=2, padding=STRIDE2_PAD),
            cnl(2 * c, 2 * c),
        )
        self.block_b = nn.Sequential(
            cnl(2 * c, 4 * c, stride=2, padding=STRIDE2_PAD),
            cnl(4 * c, 4 * c),
        )
        self.block_c = nn.Sequential(
            cnl(4 * c, 4 * c),
            irb(4 * c, 8 * c),  # no residual: 128 -> 256
            irb(8 * c, 8 * c),
            irb(8 * c, 8 * c),
            irb(8 * c, 8 * c),
            cnl(8 * c, 4 * c),
        )
        # block_d[0] / block_e[0] are the convs of TF `Unsample` (resize x2 then a full 3x3 Conv-Block).
        self.block_d = nn.Sequential(cnl(4 * c, 4 * c), cnl(4 * c, 4 * c))
        self.block_e = nn.Sequential(
            cnl(4 * c, 2 * c),
            cnl(2 * c, 2 * c),
            cnl(2 * c, c, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(c, 3, 1, bias=False), nn.Tanh())
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """TF init: contrib variance_scaling_initializer() = truncated normal, std sqrt(1.3 * 2 / fan_in);
        depthwise biases zero."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                std = math.sqrt(2.6 / fan_in)
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "GeneratorV2")
        h, w = x.shape[-2:]
        # Sides the reference graph cannot run (not a multiple of 4 for the x2 resizes, or < 8 px for the
        # reflect pads at H/4) are padded bottom/right here and cropped back below; other sizes run as-is.
        x = pad_to_native(x, native_multiple(self.config.upsample))
        out = self.block_a(x)
        half_size = out.shape[-2:]  # (H/2, W/2) at native sizes; the port's align_corners target
        out = self.block_c(self.block_b(out))
        out = self.block_d(resize(out, half_size, self.config.upsample))
        out = self.block_e(resize(out, x.shape[-2:], self.config.upsample))
        out = self.out_layer(out)
        return out[..., :h, :w]


# --- TF checkpoint mapping (animegan/nn/tf_names.py) -------------------------------------------------------
# AG2's scopes A..E hold Conv-Blocks named Conv{_i} + LayerNorm{_i} in creation order; in C the first and last
# Conv-Blocks are Conv / Conv_1 around the IRBs r1..r4, each of which holds Conv + LayerNorm (expand),
# r{n}/w + r{n}/bias (depthwise), `1` (its LN), Conv_1 (project) and `2` (its LN). The output conv is
# out_layer/Conv. (The names bryandlee's convert_weights.py maps onto this module's keys, spec section 4.1.)


def tf_variable_map() -> VariableMap:
    """state_dict key -> (TF checkpoint variable name, permutation from the TF layout or None); 77 tensors."""
    s = TF_SCOPE
    out: VariableMap = {}
    for block, count in (("a", 3), ("b", 2), ("d", 2), ("e", 3)):
        for i in range(count):
            conv_block(out, f"block_{block}.{i}", f"{s}/{block.upper()}", i, "LayerNorm")
    conv_block(out, "block_c.0", f"{s}/C", 0, "LayerNorm")
    conv_block(out, "block_c.5", f"{s}/C", 1, "LayerNorm")
    for n in range(1, 5):
        inverted_res_block(out, f"block_c.{n}", f"{s}/C/r{n}", "LayerNorm", dw_bias=True)
    out["out_layer.0.weight"] = (f"{s}/out_layer/Conv/weights", CONV)
    return out


def state_dict_from_tf(tf_tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert the generator tensors of a TF AnimeGANv2 checkpoint (e.g. generator_Hayao_weight/Hayao-64.ckpt)
    to a GeneratorV2 state dict. Extra TF variables (optimizer slots, discriminator) are ignored."""
    return convert(tf_tensors, tf_variable_map(), "AnimeGANv2 generator")
