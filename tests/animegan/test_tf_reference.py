"""The legacy resize and the loss terms against TensorFlow's own results (tests/animegan/data/tf_reference.npz,
written by TensorFlow 2.21 from the AnimeGAN tools/ops.py definitions: make_tf_reference.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from animegan import losses
from animegan.config import DiscriminatorConfig
from animegan.nn.discriminator import Discriminator
from animegan.nn.layers import tf_legacy_resize
from animegan.nn.vgg import VGG19Features
from tests.animegan.tf_fixture import discriminator_layers, vgg_weights

REFERENCE = np.load(Path(__file__).resolve().parent / "data" / "tf_reference.npz")


def nchw(name: str) -> torch.Tensor:
    return torch.from_numpy(REFERENCE[name]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("key", [k for k in REFERENCE.files if k.startswith("resize_") and k != "resize_in"])
def test_legacy_resize_equals_tensorflow(key):
    h, w = (int(n) for n in key.removeprefix("resize_").split("x"))
    ours = tf_legacy_resize(nchw("resize_in"), (h, w)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, REFERENCE[key], rtol=0, atol=2e-6)


def test_yuv_and_color_loss_equal_tensorflow():
    yuv = losses.rgb_to_yuv((nchw("photo") + 1) / 2).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(yuv, REFERENCE["yuv"], rtol=0, atol=1e-6)
    ours = losses.color_loss(nchw("photo"), nchw("fake")).item()
    assert ours == pytest.approx(float(REFERENCE["color_loss"]), rel=1e-6)


def test_gram_style_content_and_tv_equal_tensorflow():
    a, b = nchw("features_a"), nchw("features_b")
    np.testing.assert_allclose(losses.gram(a).numpy(), REFERENCE["gram_a"], rtol=1e-5, atol=1e-6)
    assert losses.style_loss(b, a).item() == pytest.approx(float(REFERENCE["style_loss"]), rel=1e-5)
    assert losses.content_loss(b, a).item() == pytest.approx(float(REFERENCE["content_loss"]), rel=1e-6)
    assert losses.total_variation_loss(nchw("fake")).item() == pytest.approx(
        float(REFERENCE["tv_loss"]), rel=1e-6
    )


def test_vgg19_caffe_path_equals_tensorflow(tmp_path):
    """A Caffe-format vgg19.npy (deterministic values) through VGG19Features and through AG1's tools/vgg19.py
    graph in TensorFlow: BGR order, mean subtraction, SAME max-pooling of odd sides, conv4_4 before ReLU."""
    path = tmp_path / "vgg19.npy"
    np.save(path, np.array(vgg_weights(), dtype=object), allow_pickle=True)
    vgg = VGG19Features(path)
    assert vgg.convention == "caffe"
    ours = vgg(nchw("vgg_in")).permute(0, 2, 3, 1).numpy()
    expected = REFERENCE["vgg_conv4_4"]
    assert ours.shape == expected.shape == (1, 3, 2, 512)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_discriminator_equals_tensorflow(arch):
    """Zero padding (stride 2: top/left only), spectral norm with one power iteration from the same u, instance
    norm (v1) or layer norm with per-channel affine (v2, eps 1e-12), LReLU 0.2: one training-mode forward, then
    the u TensorFlow would store."""
    d = Discriminator(DiscriminatorConfig(arch=arch, base_channels=16))
    state = d.state_dict()
    for layer in discriminator_layers(arch):
        if layer[0] == "conv":
            _, key, w, u, _ = layer
            state[f"{key}.parametrizations.weight.original"] = torch.from_numpy(w).permute(3, 2, 0, 1)
            state[f"{key}.parametrizations.weight.0.u"] = torch.from_numpy(u[0])
        elif layer[0] == "norm":
            _, key, gamma, beta, _, _ = layer
            state[f"{key}.weight"], state[f"{key}.bias"] = torch.from_numpy(gamma), torch.from_numpy(beta)
    d.load_state_dict(state)
    with torch.no_grad():
        logits = d.train()(nchw("d_in")).permute(0, 2, 3, 1).numpy()
    expected = REFERENCE[f"d_{arch}_logits"]
    assert logits.shape == expected.shape == (2, 8, 6, 1)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    first = d.layers[1].parametrizations.weight[0].u
    torch.testing.assert_close(first, torch.from_numpy(REFERENCE[f"d_{arch}_u1"][0]), rtol=1e-5, atol=1e-6)
