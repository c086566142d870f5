"""The TF legacy bilinear resize against an independent numpy computation, and the padding helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animegan.nn.layers import (
    MIN_NATIVE_SIDE,
    GroupNorm,
    ReflectionPad2d,
    pad_to_native,
    resize,
    tf_legacy_resize,
)


def numpy_legacy_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ResizeBilinear(align_corners=False, half_pixel_centers=False), pixel by pixel from its definition."""
    _, _, in_h, in_w = img.shape
    out = np.zeros(img.shape[:2] + (out_h, out_w), dtype=np.float64)
    for y in range(out_h):
        sy = y * in_h / out_h
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, in_h - 1)
        fy = sy - y0
        for x in range(out_w):
            sx = x * in_w / out_w
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, in_w - 1)
            fx = sx - x0
            top = img[..., y0, x0] + (img[..., y0, x1] - img[..., y0, x0]) * fx
            bottom = img[..., y1, x0] + (img[..., y1, x1] - img[..., y1, x0]) * fx
            out[..., y, x] = top + (bottom - top) * fy
    return out


@pytest.mark.parametrize(
    ("in_size", "out_size"),
    [
        ((4, 6), (8, 12)),  # exact x2 (generator up path)
        ((8, 6), (4, 3)),  # exact /2 (generator down path)
        ((5, 7), (10, 14)),  # x2 from odd sizes
        ((5, 7), (2, 3)),  # //2 of odd sizes
        ((3, 5), (7, 4)),  # arbitrary up/down mix
        ((1, 1), (3, 2)),
        ((9, 11), (9, 11)),  # identity
    ],
)
def test_tf_legacy_resize_matches_numpy_definition(in_size, out_size):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3) + in_size)
    ours = tf_legacy_resize(torch.from_numpy(img).float(), out_size).double().numpy()
    ref = numpy_legacy_resize(img, *out_size)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_legacy_x2_is_not_pytorch_half_pixel_bilinear():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 2, 4).contiguous()
    ours = tf_legacy_resize(x, (4, 8))[0, 0, 0]
    # out[2i] = in[i], out[2i+1] = (in[i] + in[i+1]) / 2, last one clamped to the edge pixel.
    assert ours.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    assert not torch.allclose(resize(x, (4, 8), "scale_factor")[0, 0, 0], ours)


def test_legacy_resize_keeps_channels_last_and_gradients():
    x = torch.randn(1, 4, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    y = tf_legacy_resize(x, (12, 12))
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    # Every input pixel feeds at least its own copy, interior ones also two half-weighted neighbours.
    assert x.grad is not None and (x.grad >= 1).all()


def test_legacy_resize_under_bf16():
    x = torch.randn(1, 3, 8, 8)
    y = tf_legacy_resize(x.bfloat16(), (16, 16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), tf_legacy_resize(x, (16, 16)), atol=0.05, rtol=0.02)


@pytest.mark.parametrize(
    ("size", "multiple", "expected"),
    [
        ((8, 8), 4, (8, 8)),
        ((9, 13), 4, (12, 16)),
        ((9, 13), 1, (9, 13)),
        ((1, 1), 4, (8, 8)),
        ((3, 5), 1, (8, 8)),
    ],
)
def test_pad_to_native_sizes_and_content(size, multiple, expected):
    x = torch.randn(1, 3, *size)
    y = pad_to_native(x, multiple)
    assert tuple(y.shape[-2:]) == expected
    assert min(expected) >= MIN_NATIVE_SIDE
    torch.testing.assert_close(y[..., : size[0], : size[1]], x)


def test_resize_rejects_unknown_mode():
    with pytest.raises(ValueError, match="nearest"):
        resize(torch.zeros(1, 1, 2, 2), (4, 4), "nearest")


def test_pad_and_norm_keep_bf16_under_autocast():
    """Autocast would run both in fp32 (a cast before and after each); ours stay in the activation dtype."""
    x = torch.randn(1, 8, 6, 6).bfloat16()
    norm = GroupNorm(1, 8, eps=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = ReflectionPad2d(1)(x)
        normed = norm(x)
        assert norm(x.float()).dtype == torch.float32
    assert padded.dtype == torch.bfloat16 and padded.shape[-2:] == (8, 8)
    assert normed.dtype == torch.bfloat16
    torch.testing.assert_close(normed.float(), norm(x.float()), atol=0.05, rtol=0.02)
