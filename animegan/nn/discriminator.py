"""The AnimeGAN PatchGAN discriminator (AG1/AG2 net/discriminator.py, spec §1.4, §2.3).

Zero padding with TF's asymmetric stride-2 padding, spectral norm on every conv, no bias, N(0, 0.02) init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from animegan.config import TF_LAYER_NORM_EPS, DiscriminatorConfig
from animegan.nn.layers import LRELU_SLOPE, check_image_batch, norm_layer

# ops.instance_norm (v1) uses 1e-5; contrib layer_norm (v2) hard-codes 1e-12.
NORM = {"v1": ("instance", 1e-5), "v2": ("layer", TF_LAYER_NORM_EPS)}
# TF ops.conv for k3: stride 1 pads 1 all round; stride 2 pads top/left 1, bottom/right 0 ((k - s) odd).
PAD_S1 = (1, 1, 1, 1)
PAD_S2 = (1, 0, 1, 0)


class TFSpectralNorm(nn.Module):
    """Spectral norm as AG1 tools/ops.py computes it: W / sigma with one power iteration per forward from the
    stored left vector u: v = normalize(W^T u), u = normalize(W v), sigma = u^T W v, then u is kept.

    PyTorch's own parametrization iterates the other way round (u from the stored v, then a new v), so its sigma
    after one step is ||W^T u|| where TF's is ||W v||, and it warms up with 15 iterations at construction. Both
    converge to the largest singular value over training; this one matches TF step for step, from a u drawn
    from a truncated normal as TF initialises it (tests/animegan/test_tf_reference.py).
    """

    def __init__(self, out_channels: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("u", nn.init.trunc_normal_(torch.empty(out_channels), a=-2.0, b=2.0))
        self._register_load_state_dict_pre_hook(self._upgrade_torch_state)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w_mat = weight.flatten(1)  # (out, in); TF flattens (kh, kw, in) first, which sigma does not depend on
        with torch.no_grad():
            v = F.normalize(w_mat.t() @ self.u, dim=0, eps=self.eps)
            u = F.normalize(w_mat @ v, dim=0, eps=self.eps)
            if self.training:
                self.u.copy_(u)
        # u and v are constants for autograd (TF's stop_gradient); sigma still depends on W.
        return weight / torch.dot(u, w_mat @ v)

    @staticmethod
    def _upgrade_torch_state(state_dict, prefix, *args) -> None:
        """Checkpoints written with PyTorch's spectral_norm hold _u (out) and _v (in): keep _u as u."""
        if prefix + "_u" in state_dict:
            state_dict[prefix + "u"] = state_dict.pop(prefix + "_u")
            state_dict.pop(prefix + "_v", None)


def tf_spectral_norm(conv: nn.Conv2d) -> nn.Conv2d:
    """Parametrize conv.weight with TFSpectralNorm (parameter: conv.parametrizations.weight.original)."""
    parametrize.register_parametrization(conv, "weight", TFSpectralNorm(conv.out_channels))
    return conv


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
        return [
            nn.ZeroPad2d(PAD_S2 if stride == 2 else PAD_S1),
            tf_spectral_norm(conv) if self.config.sn else conv,
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "Discriminator")
        return self.layers(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The logits and the activation after every LeakyReLU (feature matching compares these)."""
        check_image_batch(x, "Discriminator")
        features = []
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x)
        return x, features
