"""Edge smoothing against a loop-by-loop re-statement of the reference algorithm, and its on-disk cache."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from animegan.data import SmoothCache, UnpairedDataset, edge_mask, smooth_edges
from animegan.data.edge_smooth import TRUNCATION_GUARD


def reference_smooth(rgb: np.ndarray) -> np.ndarray:
    """AnimeGAN tools/edge_smooth.py, per pixel and per channel as written there (on RGB instead of BGR)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 100, 200)
    dilation = cv2.dilate(edges, np.ones((5, 5), np.uint8))
    gauss = cv2.getGaussianKernel(5, 0)
    gauss = gauss * gauss.transpose(1, 0)
    pad = np.pad(rgb, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    out = np.copy(rgb)
    ys, xs = np.where(dilation != 0)
    for y, x in zip(ys, xs, strict=True):
        for c in range(3):
            value = np.sum(np.multiply(pad[y : y + 5, x : x + 5, c], gauss))
            out[y, x, c] = int(np.floor(value + TRUNCATION_GUARD))
    return out


def synthetic_image(size: int = 40, seed: int = 0) -> np.ndarray:
    """A noisy dark background with a bright square and a colored disc: strong edges plus flat regions."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 40, (size, size, 3), dtype=np.uint8)
    img[8:20, 6:18] = (230, 220, 210)
    cv2.circle(img, (28, 27), 7, (40, 200, 90), -1)
    return img


def test_matches_reference_restatement_and_keeps_non_edge_pixels():
    img = synthetic_image()
    mask = edge_mask(img)
    assert 0 < mask.sum() < mask.size // 2, "the synthetic image should have some, not only, edge pixels"

    out = smooth_edges(img)

    np.testing.assert_array_equal(out, reference_smooth(img))
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert (out[mask] != img[mask]).any(), "smoothing changed no edge pixel"


def test_edges_use_rgb_gray_weights():
    # Pure red and pure blue squares on black: RGB weights give gray 76 (red) and 29 (blue); with the
    # R/B swap of some ports the red square would get 29 and fall under Canny's low threshold of 100.
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = (255, 0, 0)
    red_edges = edge_mask(img).sum()
    img[8:24, 8:24] = (0, 0, 255)
    blue_edges = edge_mask(img).sum()
    assert red_edges > 0
    assert blue_edges == 0


def write_png(path, rgb):
    Image.fromarray(rgb).save(path)


def test_cache_is_reused_and_recomputed_when_a_file_changes(tmp_path):
    photos, styles, cache_dir = tmp_path / "photos", tmp_path / "styles", tmp_path / "cache"
    photos.mkdir()
    styles.mkdir()
    write_png(photos / "p.png", synthetic_image(seed=1))
    for i in range(3):
        write_png(styles / f"s{i}.png", synthetic_image(seed=10 + i))

    first = UnpairedDataset(photos, styles, image_size=32, batch_size=1, seed=0, smooth_cache_dir=cache_dir)
    assert (first.smooth_cache.hits, first.smooth_cache.misses) == (0, 3)
    assert len(list(cache_dir.glob("*.png"))) == 3

    second = UnpairedDataset(photos, styles, image_size=32, batch_size=1, seed=0, smooth_cache_dir=cache_dir)
    assert (second.smooth_cache.hits, second.smooth_cache.misses) == (3, 0)
    np.testing.assert_array_equal(second.smooth_gray, first.smooth_gray)

    write_png(styles / "s1.png", synthetic_image(seed=99))
    third = UnpairedDataset(photos, styles, image_size=32, batch_size=1, seed=0, smooth_cache_dir=cache_dir)
    assert (third.smooth_cache.hits, third.smooth_cache.misses) == (2, 1)
    expected = cv2.cvtColor(smooth_edges(third.styles.color[1]), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(third.smooth_gray[1], expected)

    # Another training size is another cache entry.
    fourth = UnpairedDataset(photos, styles, image_size=36, batch_size=1, seed=0, smooth_cache_dir=cache_dir)
    assert fourth.smooth_cache.misses == 3


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    cache = SmoothCache(tmp_path)
    img = synthetic_image(size=32)
    cache.get_or_compute("ab" * 32, 32, img)
    entry = next(tmp_path.glob("*.png"))
    entry.write_bytes(b"not a png")
    again = cache.get_or_compute("ab" * 32, 32, img)
    np.testing.assert_array_equal(again, smooth_edges(img))
    assert (cache.hits, cache.misses) == (0, 2)
