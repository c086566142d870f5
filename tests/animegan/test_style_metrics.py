"""The style statistics (animegan/style_metrics.py) on hand-computed cases, and the evaluation that reports them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from animegan.evaluation import mean_score, score_images, score_table
from animegan.style_metrics import (
    GMSD_C,
    blackhat,
    colourfulness,
    gmsd,
    luma,
    outline_correlation,
    outline_energy,
    style_stats,
    tone_aligned_psnr,
)

H, W = 16, 20


def gray(value: float, h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def with_dark_column(column: int, width: int = 1, base: int = 200, dark: int = 100) -> np.ndarray:
    image = gray(base)
    image[:, column : column + width] = dark
    return image


def test_luma_weights():
    assert luma(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(0.299 * 255, abs=1e-4)
    assert luma(np.array([[[10, 20, 30]]], np.uint8))[0, 0] == pytest.approx(2.99 + 11.74 + 3.42, abs=1e-4)


def test_outline_energy_counts_thin_dark_lines_only():
    # A 1 px line 100 levels darker: the closing fills it, so the black-hat is 100 on the line, 0 elsewhere.
    thin = with_dark_column(8)
    assert blackhat(thin)[:, 8] == pytest.approx(np.full(H, 100.0))
    assert outline_energy(thin) == pytest.approx(100 / W)
    # A 3 px line still fits inside the 5x5 element; a 7 px dark band does not: its middle is no outline.
    assert outline_energy(with_dark_column(8, width=3)) == pytest.approx(300 / W)
    band = blackhat(with_dark_column(6, width=7))
    assert band[:, 9] == pytest.approx(np.zeros(H))
    assert outline_energy(gray(128)) == 0.0
    # A bright line is not a dark outline.
    assert outline_energy(with_dark_column(8, base=100, dark=200)) == 0.0


def test_outline_correlation_of_same_and_of_disjoint_lines():
    a = with_dark_column(5)
    assert outline_correlation(a, a) == pytest.approx(1.0)
    # Two disjoint indicator maps of k ones in N pixels: Pearson r = -k / (N - k) = -1 / 19 here.
    assert outline_correlation(a, with_dark_column(12)) == pytest.approx(-1 / (W - 1))
    assert outline_correlation(a, gray(200)) == 0.0  # a constant map correlates with nothing


def test_colourfulness_of_red_and_blue_halves():
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 2] = (255, 0, 0)
    image[:, W // 2 :] = (0, 0, 255)
    # rg: 255 on red, 0 on blue; yb = (R + G) / 2 - B: 127.5 on red, -255 on blue.
    sd_rg, sd_yb = 127.5, (127.5 + 255) / 2
    mean_rg, mean_yb = 127.5, (127.5 - 255) / 2
    expected = math.hypot(sd_rg, sd_yb) + 0.3 * math.hypot(mean_rg, mean_yb)
    assert colourfulness(image) == pytest.approx(expected)
    assert colourfulness(gray(90)) == 0.0


def test_gmsd_of_a_step_against_a_flat_image():
    assert gmsd(with_dark_column(8), with_dark_column(8)) == pytest.approx(0.0)
    step = gray(0)
    step[:, W // 2 :] = 255
    # Sobel x of a 0 -> 1 step is 4 on the two columns beside it, 0 elsewhere; the flat image's gradient is 0.
    at_edge = GMSD_C / (16 + GMSD_C)
    p = 2 / W
    assert gmsd(step, gray(0)) == pytest.approx((1 - at_edge) * math.sqrt(p * (1 - p)))


def test_tone_aligned_psnr_forgives_a_global_tone_map_only():
    rng = np.random.default_rng(0)
    target = (rng.integers(0, 3, (H, W, 3)) * 100).astype(np.uint8)  # 0, 100, 200
    toned = (target // 2 + 20).astype(np.uint8)  # 0.5 t + 20, exact in uint8
    assert tone_aligned_psnr(toned, target) == math.inf
    other = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    # Against numpy's least-squares line per channel:
    se = 0.0
    for c in range(3):
        x, y = other[..., c].ravel().astype(float), target[..., c].ravel().astype(float)
        a, b = np.polyfit(x, y, 1)
        se += ((a * x + b - y) ** 2).sum()
    assert tone_aligned_psnr(other, target) == pytest.approx(10 * math.log10(255**2 / (se / other.size)))


def test_wrong_inputs_are_named():
    with pytest.raises(ValueError, match="uint8"):
        outline_energy(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        gmsd(gray(0), gray(0, h=8))


def test_scores_report_photo_output_and_target_statistics():
    photo, target = with_dark_column(3, dark=150), with_dark_column(8)
    score = score_images("a", photo, target.copy(), target)
    assert score.output == style_stats(target, target) and score.output.outline_corr == pytest.approx(1.0)
    assert score.photo.outline_energy == pytest.approx(50 / W)
    assert score.target.outline_corr is None and score.target.outline_energy == pytest.approx(100 / W)
    mean = mean_score([score, score_images("b", photo, photo, target)])
    assert mean.output.outline_energy == pytest.approx((100 / W + 50 / W) / 2)
    table = score_table(mean).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["photo", "model", "target"]
    assert "outline" in table[0] and "colour" in table[0] and "GMSD" in table[0]
