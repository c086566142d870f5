"""The AnimeGAN PatchGAN discriminator (AG1/AG2 net/discriminator.py, spec §1.4, §2.3).

Zero padding with TF's asymmetric stride-2 padding, spectral norm on every conv, no bias, N(0, 0.02) init.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from animegan.config import TF_LAYER_NORM_EPS, DiscriminatorConfig
from animegan.nn.layers import LRELU_SLOPE, check_image_batch, norm_layer

# ops.instance_norm (v1) uses 1e-5; contrib layer_norm (v2) hard-codes 1e-12.
NORM = {"v1": ("instance", 1e-5), "v2": ("layer", TF_LAYER_NORM_EPS)}
# TF ops.conv for k3: stride 1 pads 1 all round; stride 2 pads top/left 1, bottom/right 0 ((k - s) odd).
PAD_S1 = (1, 1, 1, 1)
PAD_S2 = (1, 0, 1, 0)


class Discriminator(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> LSGAN logits (B, 1, H / 2^(n_dis-1), W / 2^(n_dis-1)) for H, W multiples of it.

    With ch=64, n_dis=3: conv 3->32, [s2 64, s1 128, norm], [s2 128, s1 256, norm], 256 + norm, -> 1;
    1,128,800 parameters.
    """

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        norm, eps = NORM[config.arch]
        ch = config.base_channels // 2
        layers: list[nn.Module] = [*self._conv(3, ch, 1), nn.LeakyReLU(LRELU_SLOPE)]
        in_ch = ch
        for _ in range(1, config.n_dis):
            layers += [*self._conv(in_ch, 2 * ch, 2), nn.LeakyReLU(LRELU_SLOPE)]
            layers += [
                *self._conv(2 * ch, 4 * ch, 1),
                norm_layer(norm, 4 * ch, eps),
                nn.LeakyReLU(LRELU_SLOPE),
            ]
            in_ch, ch = 4 * ch, 2 * ch
        layers += [*self._conv(in_ch, 2 * ch, 1), norm_layer(norm, 2 * ch, eps), nn.LeakyReLU(LRELU_SLOPE)]
        layers += self._conv(2 * ch, 1, 1)
        self.layers = nn.Sequential(*layers)

    def _conv(self, in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
        conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=0, bias=False)
        nn.init.normal_(conv.weight, mean=0.0, std=0.02)
        # Wrap after init: the parametrization seeds its power-iteration vectors from this weight.
        return [
            nn.ZeroPad2d(PAD_S2 if stride == 2 else PAD_S1),
            spectral_norm(conv) if self.config.sn else conv,
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "Discriminator")
        return self.layers(x)
