"""Independent re-implementation of bryandlee/animegan2-pytorch `model.py` (spec §4.1), for tests only.

Written from the spec, not from animegan.nn, so that key/shape equality and output equality with our
GeneratorV2 are a real check of the port compatibility. `width` scales the channels (32 in the port).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormLReLU(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, padding=1, groups=1, bias=False, eps=1e-5):
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(
                in_ch, out_ch, kernel_size=kernel_size, stride=stride, padding=0, groups=groups, bias=bias
            ),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True, eps=eps),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, expansion_ratio=2, eps=1e-5):
        super().__init__()
        self.use_res_connect = in_ch == out_ch
        bottleneck = int(round(in_ch * expansion_ratio))
        layers = []
        if expansion_ratio != 1:
            layers.append(ConvNormLReLU(in_ch, bottleneck, kernel_size=1, padding=0, eps=eps))
        layers.append(ConvNormLReLU(bottleneck, bottleneck, groups=bottleneck, bias=True, eps=eps))
        layers.append(nn.Conv2d(bottleneck, out_ch, kernel_size=1, padding=0, bias=False))
        layers.append(nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True, eps=eps))
        self.layers = nn.Sequential(*layers)

    def forward(self, input):
        out = self.layers(input)
        if self.use_res_connect:
            out = input + out
        return out


class Generator(nn.Module):
    def __init__(self, width=32, eps=1e-5):
        super().__init__()
        w = width
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, w, kernel_size=7, padding=3, eps=eps),
            ConvNormLReLU(w, 2 * w, stride=2, padding=(0, 1, 0, 1), eps=eps),
            ConvNormLReLU(2 * w, 2 * w, eps=eps),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(2 * w, 4 * w, stride=2, padding=(0, 1, 0, 1), eps=eps),
            ConvNormLReLU(4 * w, 4 * w, eps=eps),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(4 * w, 4 * w, eps=eps),
            InvertedResBlock(4 * w, 8 * w, 2, eps=eps),
            InvertedResBlock(8 * w, 8 * w, 2, eps=eps),
            InvertedResBlock(8 * w, 8 * w, 2, eps=eps),
            InvertedResBlock(8 * w, 8 * w, 2, eps=eps),
            ConvNormLReLU(8 * w, 4 * w, eps=eps),
        )
        self.block_d = nn.Sequential(
            ConvNormLReLU(4 * w, 4 * w, eps=eps), ConvNormLReLU(4 * w, 4 * w, eps=eps)
        )
        self.block_e = nn.Sequential(
            ConvNormLReLU(4 * w, 2 * w, eps=eps),
            ConvNormLReLU(2 * w, 2 * w, eps=eps),
            ConvNormLReLU(2 * w, w, kernel_size=7, padding=3, eps=eps),
        )
        self.out_layer = nn.Sequential(
            nn.Conv2d(w, 3, kernel_size=1, stride=1, padding=0, bias=False), nn.Tanh()
        )

    def forward(self, input, align_corners=True):
        out = self.block_a(input)
        half_size = out.size()[-2:]
        out = self.block_b(out)
        out = self.block_c(out)
        if align_corners:
            out = F.interpolate(out, half_size, mode="bilinear", align_corners=True)
        else:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.block_d(out)
        if align_corners:
            out = F.interpolate(out, input.size()[-2:], mode="bilinear", align_corners=True)
        else:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.block_e(out)
        out = self.out_layer(out)
        return out


def random_state_dict(width: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random state dict of the port's Generator with non-trivial norm affines and biases."""
    torch.manual_seed(seed)
    model = Generator(width)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return model.state_dict()
