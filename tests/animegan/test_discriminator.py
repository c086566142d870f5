"""Discriminator: reference size, logit map shape, TF padding, spectral norm on every conv, init, norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from animegan.config import DiscriminatorConfig
from animegan.errors import ConfigError
from animegan.nn import build_discriminator


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_reference_size_and_no_bias(arch):
    d = build_discriminator(DiscriminatorConfig(arch=arch))
    assert sum(p.numel() for p in d.parameters()) == 1_128_800
    assert len(convs(d)) == 7 and all(c.bias is None for c in convs(d))
    assert [c.out_channels for c in convs(d)] == [32, 64, 128, 128, 256, 256, 1]


@pytest.mark.parametrize(("arch", "groups", "eps"), [("v1", 64, 1e-5), ("v2", 1, 1e-12)])
def test_norm_kind_per_arch(arch, groups, eps):
    d = build_discriminator(DiscriminatorConfig(arch=arch, base_channels=16))
    norms = [m for m in d.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3
    last = norms[-1]  # ch/2 = 8 doubled twice, then x2: 64 channels for base 16
    assert last.num_channels == 64 and last.num_groups == groups and last.eps == eps


@pytest.mark.parametrize(
    ("size", "expected"), [((64, 64), (16, 16)), ((32, 48), (8, 12)), ((33, 17), (8, 4))]
)
def test_logit_map_is_quarter_size(size, expected):
    d = build_discriminator(DiscriminatorConfig(arch="v2", base_channels=16))
    out = d(torch.rand(2, 3, *size) * 2 - 1)
    assert out.shape == (2, 1, *expected)
    assert torch.isfinite(out).all()


def test_stride2_padding_is_top_left_zero():
    d = build_discriminator(DiscriminatorConfig(arch="v1", base_channels=16, sn=False))
    layers = list(d.layers)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            pad = layers[i - 1]
            assert isinstance(pad, nn.ZeroPad2d) and layer.padding == (0, 0)
            assert pad.padding == ((1, 0, 1, 0) if layer.stride == (2, 2) else (1, 1, 1, 1))
    # Functional check on the first stride-2 conv: output (0, 0) sees zeros above/left of pixel (0, 0).
    conv = convs(d)[1]
    x = torch.randn(1, conv.in_channels, 6, 6)
    y = conv(layers[layers.index(conv) - 1](x))
    manual = (conv.weight[:, :, 1:, 1:] * x[:, :, :2, :2].unsqueeze(1)).sum(dim=(2, 3, 4))
    torch.testing.assert_close(y[:, :, 0, 0], manual)
    assert y.shape[-2:] == (3, 3)


def test_spectral_norm_on_every_conv_and_converges_to_one():
    torch.manual_seed(0)
    d = build_discriminator(DiscriminatorConfig(arch="v2", base_channels=16)).train()
    assert all(parametrize.is_parametrized(c, "weight") for c in convs(d))
    x = torch.rand(1, 3, 16, 16)
    for _ in range(30):  # one power iteration per training forward
        d(x)
    d.eval()
    for conv in convs(d):
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    assert not any(
        parametrize.is_parametrized(c) for c in convs(build_discriminator(DiscriminatorConfig(sn=False)))
    )


def test_init_is_normal_002():
    torch.manual_seed(0)
    d = build_discriminator(DiscriminatorConfig(arch="v1", sn=True))
    original = convs(d)[5].parametrizations.weight.original  # 256 x 256 x 3 x 3
    assert original.mean().abs() < 1e-3
    assert original.std().item() == pytest.approx(0.02, rel=0.02)


def test_gradients_flow_and_config_errors():
    d = build_discriminator(DiscriminatorConfig(arch="v1", base_channels=8, n_dis=2))
    out = d(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1, 16, 16)
    out.square().mean().backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ConfigError, match="base_channels"):
        DiscriminatorConfig(base_channels=7)
    with pytest.raises(ConfigError, match="n_dis"):
        DiscriminatorConfig(n_dis=0)


def test_checkpoints_with_pytorch_spectral_norm_vectors_still_load():
    """Before TFSpectralNorm, checkpoints held PyTorch's _u (out) and _v (in); _u becomes u, _v is dropped."""
    d = build_discriminator(DiscriminatorConfig(arch="v1", base_channels=8))
    old = {}
    for key, value in d.state_dict().items():
        if key.endswith(".0.u"):
            old[key[:-1] + "_u"] = value + 1
            old[key[:-1] + "_v"] = torch.zeros(3)
        else:
            old[key] = value
    fresh = build_discriminator(DiscriminatorConfig(arch="v1", base_channels=8))
    fresh.load_state_dict(old, strict=True)
    for key, value in d.state_dict().items():
        expected = value + 1 if key.endswith(".0.u") else value
        torch.testing.assert_close(fresh.state_dict()[key], expected)
