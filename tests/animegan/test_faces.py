"""The portrait path (animegan/inference/faces.py): faces found on the portrait and on none of the landscapes
that fool the cascade alone, the soft mask, the enlarged face pass, the face statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.config import GeneratorConfig
from animegan.inference import InferenceOptions, Stylizer
from animegan.inference.faces import (
    FACE_SIDE,
    REGION_SCALE,
    Box,
    detect_faces,
    face_mask,
    face_stats,
    hue_difference,
    portrait_finish,
    stylize_faces,
)
from animegan.inference.stylizer import reference_size
from animegan.nn import build_generator
from tests.conftest import PROJECT_ROOT

PORTRAIT = PROJECT_ROOT / "samples" / "portrait" / "astronaut.jpg"
SHARED_PHOTOS = PROJECT_ROOT.parent / "shared" / "data" / "photos"
# The shared photos on which the face cascade alone fires (windows, foliage, masonry, poles): no faces in them.
FOOLING = ("01", "06", "10", "14", "18", "23", "26", "27", "28", "33", "37")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.asarray(Image.open(PORTRAIT).convert("RGB"))


def test_the_portrait_has_one_face_where_it_is(portrait):
    (box,) = detect_faces(portrait)
    # Eileen Collins' face in NASA's 512 px portrait: about x 177-270, y 67-160.
    assert abs(box.x - 177) <= 8 and abs(box.y - 67) <= 8 and 80 <= box.w <= 110
    (mirrored,) = detect_faces(np.ascontiguousarray(portrait[:, ::-1]))
    assert abs((mirrored.x + mirrored.w / 2) - (512 - box.x - box.w / 2)) <= 12


@pytest.mark.skipif(not SHARED_PHOTOS.is_dir(), reason="../shared/data/photos is not beside the checkout")
def test_no_face_is_found_in_landscapes_that_fool_the_cascade_alone():
    import cv2

    for name in FOOLING:
        rgb = np.asarray(Image.open(SHARED_PHOTOS / f"photo_{name}.jpg").convert("RGB"))
        h, w = reference_size(*rgb.shape[:2])
        assert detect_faces(cv2.resize(rgb, (w, h))) == [], name


def test_the_mask_is_one_on_the_face_and_fades_out():
    box = Box(40, 40, 40, 40)
    region = box.scaled(REGION_SCALE, 200, 200)
    mask = face_mask(region, box)
    assert mask.shape == (region.h, region.w)
    cy, cx = box.y + 20 - region.y, box.x + 20 - region.x
    assert mask[cy, cx] == pytest.approx(1.0, abs=1e-3) and mask[0, 0] < 0.01
    assert 0.05 < mask[cy, cx + 26] < 0.95  # the soft edge, just outside the ellipse's half-width


def test_each_face_is_run_enlarged_and_blended_back(portrait):
    (box,) = detect_faces(portrait)
    seen = []

    def identity(rgb: np.ndarray) -> np.ndarray:
        seen.append(rgb.shape)
        return rgb

    out = stylize_faces(portrait, np.zeros_like(portrait), identity)
    region = box.scaled(REGION_SCALE, 512, 512)
    scale = FACE_SIDE / box.w
    assert seen == [(round(region.h * scale), round(region.w * scale), 3)]
    # The photo's own face came back (up and down again), its skin tone as it was, its lines inked darker.
    stats = face_stats(portrait, out, box)
    assert stats.hue_shift < 2 and 0.9 < stats.colourfulness_ratio < 1.1 and stats.outline_ratio > 1.2
    assert out[: region.y].max() == 0 and out[region.y + region.h :].max() == 0  # outside: untouched


def test_the_portrait_finish_keeps_skin_chroma_and_inks_only_real_lines():
    import cv2

    photo = np.full((40, 40, 3), (200, 150, 130), np.uint8)  # skin
    face = np.full((40, 40, 3), (190, 180, 110), np.uint8)  # the same, yellow-green as the palette makes it
    face[:, 10] -= 40  # a line 40 levels deep
    face[:, 30] -= 5  # texture, under the threshold
    skin = Box(5, 5, 30, 30)
    done = portrait_finish(face, photo, skin)
    ab = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[..., 1:].reshape(-1, 2).astype(float).mean(axis=0)  # noqa: E731
    assert np.abs(ab(done[5:35, 5:35]) - ab(photo)).max() < 1.5  # the photo's mean chroma
    lightness = cv2.cvtColor(done, cv2.COLOR_RGB2LAB)[..., 0].astype(int)
    before = cv2.cvtColor(face, cv2.COLOR_RGB2LAB)[..., 0].astype(int)
    assert lightness[20, 10] < before[20, 10] - 20  # the line is darker
    assert abs(lightness[20, 30] - before[20, 30]) <= 1 and abs(lightness[20, 20] - before[20, 20]) <= 1


def test_the_stylizer_changes_only_the_face_region(portrait):
    torch.manual_seed(0)
    model = build_generator(GeneratorConfig(base_channels=8))
    options = InferenceOptions(size_mode="original", precision="fp32")
    image = Image.fromarray(portrait)
    plain = np.asarray(
        Stylizer(model, options=InferenceOptions(**{**options.__dict__, "faces": False})).stylize(image)
    )
    with_faces = np.asarray(Stylizer(model, options=options).stylize(image))
    (box,) = detect_faces(portrait)
    region = box.scaled(REGION_SCALE, 512, 512)
    changed = np.argwhere(np.abs(plain.astype(int) - with_faces).max(axis=2) > 0)
    assert len(changed) > 0.3 * box.w * box.h
    assert changed[:, 0].min() >= region.y and changed[:, 0].max() < region.y + region.h
    assert changed[:, 1].min() >= region.x and changed[:, 1].max() < region.x + region.w


def test_face_statistics(portrait):
    (box,) = detect_faces(portrait)
    same = face_stats(portrait, portrait, box)
    assert same.hue_shift == pytest.approx(0) and same.colourfulness_ratio == pytest.approx(1)
    assert same.outline_ratio == pytest.approx(1)
    gray = np.repeat(portrait.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    assert face_stats(portrait, gray, box).colourfulness_ratio < 0.05
    assert hue_difference(350, 10) == 20 and hue_difference(10, 190) == 180
