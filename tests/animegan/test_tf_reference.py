"""The legacy resize and the loss terms against TensorFlow's own results (tests/animegan/data/tf_reference.npz,
written by TensorFlow 2.21 from the AnimeGAN tools/ops.py definitions: make_tf_reference.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from animegan import losses
from animegan.nn.layers import tf_legacy_resize

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
