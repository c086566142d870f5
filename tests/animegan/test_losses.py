"""Loss terms on hand-checked cases, the weighted totals of each preset, and fp32 reductions under bf16."""

from __future__ import annotations

import pytest
import torch

from animegan.config import LOSS_PRESETS, LossWeights, loss_preset
from animegan.errors import ConfigError
from animegan.losses import (
    AnimeGANLoss,
    color_loss,
    content_loss,
    gram,
    lsgan_fake,
    lsgan_real,
    rgb_to_yuv,
    style_loss,
    total_variation_loss,
)
from animegan.nn import VGG19Features


@pytest.fixture(scope="module")
def vgg(vgg19_npy) -> VGG19Features:
    return VGG19Features(vgg19_npy)


def images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_gram_of_a_known_tensor_is_per_sample():
    # Sample 0: channel 0 = [1, 2], channel 1 = [3, 4] on a 1x2 map; H W C = 4.
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]], [[[1.0, 0.0]], [[0.0, 1.0]]]])
    g = gram(x)
    assert g.shape == (2, 2, 2)
    torch.testing.assert_close(g[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4)
    torch.testing.assert_close(g[1], torch.eye(2) / 4)
    same = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    assert style_loss(same, same) == 0
    # L1 mean over the 4 entries of the Gram difference of sample 0 vs the identity sample.
    assert style_loss(x[1:], x[:1]).item() == pytest.approx((4 + 11 + 11 + 24) / 4 / 4)


def test_rgb_to_yuv_matches_tf_kernel():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_yuv(rgb).flatten(), torch.tensor([0.299, -0.14714119, 0.61497538]))
    white = torch.ones(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_yuv(white).flatten(), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_color_loss_identical_is_zero_and_hand_case():
    x = images(2, 0)
    assert color_loss(x, x).item() == 0
    black = -torch.ones(1, 3, 4, 4)
    blue = black.clone()
    blue[:, 2] = 1.0  # RGB (0, 0, 1) after (x + 1) / 2
    # |dY| = 0.114; Huber(dU = 0.43601035) = dU^2 / 2; Huber(dV = -0.10001026) = dV^2 / 2.
    expected = 0.114 + 0.5 * 0.43601035**2 + 0.5 * 0.10001026**2
    assert color_loss(black, blue).item() == pytest.approx(expected, rel=1e-6)


def test_total_variation_of_a_ramp():
    h = torch.arange(5.0).view(1, 1, 5, 1)
    w = torch.arange(7.0).view(1, 1, 1, 7)
    ramp = (0.3 * h + 0.1 * w).expand(2, 3, 5, 7)
    assert total_variation_loss(ramp).item() == pytest.approx(0.5 * 0.3**2 + 0.5 * 0.1**2)
    assert total_variation_loss(torch.ones(1, 3, 4, 4)).item() == 0


def test_lsgan_terms_and_discriminator_total_on_constant_logits():
    crit = AnimeGANLoss(torch.nn.Identity(), loss_preset("v1"))
    shape = (2, 1, 8, 8)
    out = crit.discriminator(
        torch.ones(shape), torch.full(shape, 0.5), torch.zeros(shape), torch.full(shape, 2.0)
    )
    assert {k: round(v.item(), 6) for k, v in out.items()} == {
        "real": 0.0,
        "fake": 0.25,
        "gray": 0.0,
        "smooth": 4.0,
        "total": 300 * (0.25 + 0.1 * 4),
    }
    assert lsgan_real(torch.zeros(shape)).item() == 1.0
    assert lsgan_fake(torch.full(shape, -3.0)).item() == 9.0
    hayao = AnimeGANLoss(torch.nn.Identity(), loss_preset("v2-hayao"))
    total = hayao.discriminator(torch.zeros(shape), torch.ones(shape), torch.ones(shape), torch.ones(shape))[
        "total"
    ]
    assert total.item() == pytest.approx(300 * (1.2 + 1.2 + 1.2 + 0.8))


@pytest.mark.parametrize("preset", ["v1", "v2-hayao", "v2-paprika", "v2-shinkai"])
def test_generator_total_is_the_weighted_sum(vgg, preset):
    w = loss_preset(preset)
    crit = AnimeGANLoss(vgg, w)
    photo, anime_gray = images(2, 1), images(3, 2)
    fake = images(2, 3).requires_grad_()
    d_fake = torch.full((2, 1, 8, 8), 0.5)
    out = crit.generator(photo, fake, anime_gray, d_fake)
    assert ("tv" in out) == preset.startswith("v2")
    expected = w.g_adv * out["adv"] + w.con * out["content"] + w.sty * out["style"] + w.color * out["color"]
    if "tv" in out:
        expected = expected + w.tv * out["tv"]
    assert out["adv"].item() == pytest.approx(0.25)
    torch.testing.assert_close(out["total"].detach(), expected)
    # The terms are what the plain functions give (style uses only the first 2 anime images).
    with torch.no_grad():
        torch.testing.assert_close(out["content"], content_loss(vgg(photo), vgg(fake)))
        torch.testing.assert_close(out["style"], style_loss(vgg(anime_gray[:2]), vgg(fake)))
    out["total"].backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="anime_gray has 1"):
        crit.generator(photo, fake, anime_gray[:1], d_fake)


def test_init_phase_is_weighted_content(vgg):
    crit = AnimeGANLoss(vgg, loss_preset("v1"))
    photo = images(2, 4)
    same = crit.init_phase(photo, photo.clone())
    assert same["content"].item() == 0
    out = crit.init_phase(photo, images(2, 5))
    assert out["content"].item() > 0
    assert out["total"].item() == pytest.approx(1.5 * out["content"].item())


def test_losses_are_fp32_under_bf16_autocast(vgg):
    crit = AnimeGANLoss(vgg, loss_preset("v2-shinkai"))
    photo, anime_gray, fake = images(2, 6), images(2, 7), images(2, 8)
    d = torch.randn(2, 1, 8, 8)
    ref = crit.generator(photo, fake, anime_gray, d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = crit.generator(photo, fake.bfloat16(), anime_gray, d.bfloat16())
        assert gram(torch.randn(1, 4, 3, 3, dtype=torch.bfloat16)).dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in low.values())
    for name in ref:
        assert low[name].item() == pytest.approx(ref[name].item(), rel=0.05), name


def test_presets_follow_the_reference_tables():
    assert LOSS_PRESETS["v1"] == LossWeights(300, 300, 1.5, 3.0, 10, 0, 1, 1, 1, 0.1)
    assert LOSS_PRESETS["v2-hayao"] == LossWeights(300, 300, 1.5, 2.5, 15, 1, 1.2, 1.2, 1.2, 0.8)
    assert LOSS_PRESETS["v2-paprika"] == LossWeights(300, 300, 2.0, 0.6, 50, 0.1, 1, 1, 1, 0.005)
    assert LOSS_PRESETS["v2-shinkai"] == LossWeights(300, 300, 1.2, 2.0, 10, 1, 1.7, 1.7, 1.7, 1.0)
    assert LossWeights.from_dict(LOSS_PRESETS["v2-hayao"].to_dict()) == LOSS_PRESETS["v2-hayao"]
    with pytest.raises(ConfigError, match="v2-kyoto"):
        loss_preset("v2-kyoto")
    with pytest.raises(ConfigError, match="color"):
        LossWeights(color=-1)
