"""Tiled inference: tile grid and blend weights, norm-statistics replay, tiled vs untiled, seams."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_stylizer import photo, tiny

from animegan.config import GeneratorConfig
from animegan.inference import InferenceOptions, Stylizer
from animegan.inference.tiling import (
    ALIGN,
    ReductionGroupNorm,
    TileModel,
    blend_weights,
    swap_norms,
    tile_starts,
    to_tensor,
)
from animegan.nn import build_generator


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(1000, 256, 64), (300, 256, 32), (256, 256, 64), (96, 64, 32)]
)
def test_tiles_cover_aligned_and_weights_sum_to_one(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(length, starts[-1] + tile) == length
    assert all(s % ALIGN == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    total = np.zeros(length)
    for start, w in zip(starts, blend_weights(starts, tile, length), strict=True):
        assert w.min() >= 0 and w.max() <= 1
        total[start : start + len(w)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_tile_edges_get_no_weight():
    starts = tile_starts(400, 128, 64)
    w = blend_weights(starts, 128, 400)
    assert w[1][:16].max() == 0 and w[0][-16:].max() == 0  # the outer quarter of each overlap is dropped
    assert w[0][0] == 1 and w[-1][-1] == 1  # image borders keep full weight


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_replayed_statistics_reproduce_the_model(arch):
    """The tile model with statistics recorded on the same input is the original model."""
    model = tiny(arch)
    x = to_tensor(np.asarray(photo(48, 40)), torch.device("cpu"))
    tiles = TileModel(model)
    assert len(tiles.fixed) == len(tiles.norms) > 0
    with torch.inference_mode():
        with tiles.recording():
            ref = model(x)
        out = tiles.model(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def untiled_and_tiled(overlap: int, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    model, image = tiny(), photo(256, 128, seed=3)
    plain = Stylizer(model, options=InferenceOptions(size_mode="original", precision=precision))
    tiled = Stylizer(
        model,
        options=InferenceOptions(
            size_mode="original", precision=precision, tile_size=128, tile_overlap=overlap, untiled_max_mb=0
        ),
    )
    return np.asarray(plain.stylize(image)).astype(float), np.asarray(tiled.stylize(image)).astype(float)


def test_tiled_equals_untiled_within_tolerance():
    untiled, tiled = untiled_and_tiled(overlap=64)
    assert tiled.shape == untiled.shape == (128, 256, 3)
    diff = np.abs(tiled - untiled).mean(axis=2)
    assert diff.mean() < 0.5, diff.mean()
    assert np.percentile(diff, 99) < 4.0 and diff.max() < 12, (np.percentile(diff, 99), diff.max())


def test_tiling_without_shared_statistics_would_be_worse():
    """Guards the point of the statistics replay: per-tile norms drift much further from the untiled run."""
    model, image = tiny(), photo(160, 96, seed=3)
    opts = InferenceOptions(
        size_mode="original", precision="fp32", tile_size=64, tile_overlap=32, untiled_max_mb=0
    )
    untiled = np.asarray(
        Stylizer(model, options=InferenceOptions(size_mode="original", precision="fp32")).stylize(image)
    )
    shared = np.asarray(Stylizer(model, options=opts).stylize(image)).astype(float)
    # Per-tile statistics: run each tile through the plain model (what naive tiling does).
    s = Stylizer(model, options=InferenceOptions(size_mode="original", precision="fp32"))
    naive = np.zeros_like(shared)
    for y in range(0, 96, 48):
        for x in range(0, 160, 80):
            naive[y : y + 48, x : x + 80] = np.asarray(s.stylize(image.crop((x, y, x + 80, y + 48))))
    assert np.abs(shared - untiled).mean() * 2 < np.abs(naive - untiled).mean()


def test_seam_blend_has_no_visible_step():
    untiled, tiled = untiled_and_tiled(overlap=64)
    steps = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))  # mean step between neighbouring columns
    reference = np.abs(np.diff(untiled, axis=1)).mean(axis=(0, 2))
    # No column boundary of the tiled output steps clearly more than the same boundary without tiling.
    assert (steps - reference).max() < 1.0, (steps - reference).max()


def test_tiled_fast_path_close_to_fp32():
    _, tiled32 = untiled_and_tiled(overlap=64)
    _, tiled16 = untiled_and_tiled(overlap=64, precision="bf16")
    psnr = 10 * np.log10(255.0**2 / np.mean((tiled32 - tiled16) ** 2))
    assert psnr > 30, psnr


def test_large_image_statistics_come_from_a_downscaled_pass():
    """Above tile_stats_side the statistics come from a downscaled copy: an approximation, still close.

    Full width (32): at width 8 a random generator's few channels make the statistics far more fragile.
    """
    torch.manual_seed(0)
    model, image = build_generator(GeneratorConfig(arch="v2")).eval(), photo(256, 128, seed=3)
    untiled = np.asarray(
        Stylizer(model, options=InferenceOptions(size_mode="original", precision="fp32")).stylize(image)
    )
    errors = []
    for stats_side in (1024, 128):  # exact statistics, then from a half-size copy
        opts = InferenceOptions(
            size_mode="original",
            precision="fp32",
            tile_size=128,
            tile_overlap=64,
            tile_stats_side=stats_side,
            untiled_max_mb=0,
        )
        out = np.asarray(Stylizer(model, options=opts).stylize(image)).astype(float)
        errors.append(np.abs(out - untiled).mean())
    assert errors[0] < 0.5 and errors[0] < errors[1] < 4.0, errors


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_reduction_group_norm_equals_group_norm_and_records_statistics(arch):
    """The CUDA-friendly norm (used by Stylizer on GPUs) computes what nn.GroupNorm does, and tiles still work."""
    model = tiny(arch)
    fast = copy.deepcopy(model)
    assert len(swap_norms(fast, ReductionGroupNorm, (torch.nn.GroupNorm,))) > 0
    x = to_tensor(np.asarray(photo(40, 36)), torch.device("cpu"))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=0)
        tiles = TileModel(fast)
        with tiles.recording():
            ref = fast(x)
        torch.testing.assert_close(tiles.model(x), ref, atol=1e-4, rtol=0)
