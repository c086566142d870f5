"""Faces in photos: detection with OpenCV's frontal-face Haar cascade (it ships in the opencv wheel, no download),
the portrait path (each face stylized again, enlarged, with its skin tone kept and its lines inked, blended back),
and the statistics a stylized face is judged by (skin hue kept, colour kept, lines drawn).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from animegan.style_metrics import colourfulness, outline_energy

CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"
# The face cascade alone fired on 11 of the 46 shared landscape and street photos (windows, foliage, masonry)
# and on none of them once a face had to show an eye in its upper part and skin in its middle; the portrait
# keeps its face under both checks.
MIN_SKIN_FRACTION = 0.25
# A face smaller than this fraction of the image's shorter side is left to the whole-image pass: the cascade's
# false positives are mostly small, and a small face gains little from a pass of its own.
MIN_FACE_FRACTION = 0.08


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def scaled(self, factor: float, width: int, height: int) -> Box:
        """The box grown by `factor` about its centre, clipped to a width x height image."""
        cx, cy = self.x + self.w / 2, self.y + self.h / 2
        half_w, half_h = self.w * factor / 2, self.h * factor / 2
        x0, y0 = max(0, round(cx - half_w)), max(0, round(cy - half_h))
        x1, y1 = min(width, round(cx + half_w)), min(height, round(cy + half_h))
        return Box(x0, y0, x1 - x0, y1 - y0)

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


@functools.cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's cascade {path} did not load")
    return cascade


def skin_fraction(rgb: np.ndarray) -> float:
    """Share of pixels in the classic YCrCb skin range (Cr 133-173, Cb 77-127; Chai and Ngan 1999)."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def _has_an_eye(gray_face: np.ndarray, box: Box) -> bool:
    upper = gray_face[: box.h * 6 // 10]
    side = max(8, box.w // 10)
    return len(_cascade(EYE_CASCADE).detectMultiScale(upper, 1.1, 3, minSize=(side, side))) > 0


def detect_faces(rgb: np.ndarray, min_fraction: float = MIN_FACE_FRACTION) -> list[Box]:
    """Frontal faces in an (H, W, 3) uint8 RGB image, largest first: the face cascade's candidates that show
    an eye in their upper part and skin in their middle."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    h, w = gray.shape
    side = max(24, round(min(h, w) * min_fraction))
    found = _cascade(CASCADE).detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(side, side))
    boxes = []
    for x, y, bw, bh in found:
        box = Box(int(x), int(y), int(bw), int(bh))
        if skin_fraction(skin_region(box, w, h).crop(rgb)) >= MIN_SKIN_FRACTION and _has_an_eye(
            box.crop(gray), box
        ):
            boxes.append(box)
    return sorted(boxes, key=lambda b: b.w * b.h, reverse=True)


def skin_region(box: Box, width: int, height: int) -> Box:
    """The inner part of a face box (cheeks, nose, mouth; not hair or background) that skin statistics read."""
    return box.scaled(0.6, width, height)


def mean_hue(rgb: np.ndarray) -> float:
    """Hue in degrees of the mean CIELAB chroma (a*, b*) of an RGB image: a chroma-weighted mean hue."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    a, b = lab[:, 1].mean() - 128, lab[:, 2].mean() - 128
    return math.degrees(math.atan2(b, a)) % 360


def hue_difference(a: float, b: float) -> float:
    """Circular difference of two hues in degrees, in [0, 180]."""
    d = abs(a - b) % 360
    return min(d, 360 - d)


@dataclass
class FaceStats:
    """A stylized face against its photo: the skin's hue shift, and colour and lines as ratios to the photo's."""

    hue_shift: float  # degrees between the skin's mean hue in the photo and in the output
    colourfulness_ratio: float  # output / photo, over the skin region
    outline_ratio: float  # output / photo outline energy, over the whole face box

    def to_dict(self) -> dict:
        return asdict(self)


def face_stats(photo: np.ndarray, output: np.ndarray, box: Box) -> FaceStats:
    if photo.shape != output.shape:
        raise ValueError(f"photo and output differ in size: {photo.shape} and {output.shape}")
    h, w = photo.shape[:2]
    skin = skin_region(box, w, h)
    p_skin, o_skin = skin.crop(photo), skin.crop(output)
    p_colour = colourfulness(p_skin)
    p_lines = outline_energy(box.crop(photo))
    return FaceStats(
        hue_difference(mean_hue(p_skin), mean_hue(o_skin)),
        colourfulness(o_skin) / p_colour if p_colour else math.inf,
        outline_energy(box.crop(output)) / p_lines if p_lines else math.inf,
    )


# The portrait path: each face is stylized again on its own, enlarged so its box is FACE_SIDE px, then blended
# back over the whole-image result with a soft ellipse. The whole-image pass sees a face at the scale of the
# landscapes the styles were learned on, where it is a few strokes; enlarged, its eyes, mouth and contour are
# edges the generator draws.
FACE_SIDE = 256  # px of the face box in the face's own pass
REGION_SCALE = 1.8  # the face pass covers the box grown by this (hair, chin, some background for context)
FEATHER = 0.12  # the mask's soft edge, as a fraction of the face box's side
# The styles are learned from landscapes and streets: on the portrait the generator moved the skin's mean hue
# 20-27 degrees towards its palette's yellow-green and, enlarged or not, drew the face's lines at 0.6-0.8x the
# photo's outline energy. So the face pass keeps the photo's mean skin chroma (CIELAB a*, b*; the lightness,
# shading and flat areas stay the generator's) and inks the lines it did draw: the black-hat of its lightness
# above INK_THRESHOLD levels, times INK (the threshold leaves skin texture alone; freckle-like dots at 0).
INK = 2.0
INK_THRESHOLD = 8.0


def face_mask(region: Box, box: Box) -> np.ndarray:
    """(h, w) float32 in [0, 1] over `region`: 1 inside an ellipse around the face box, falling off softly."""
    mask = np.zeros((region.h, region.w), np.float32)
    centre = (round(box.x + box.w / 2 - region.x), round(box.y + box.h / 2 - region.y))
    axes = (round(box.w * 0.62), round(box.h * 0.78))  # taller than wide: forehead and chin
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    sigma = max(1.0, FEATHER * box.w)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def portrait_finish(face: np.ndarray, photo: np.ndarray, skin: Box) -> np.ndarray:
    """The stylized face region with the photo's mean skin chroma over `skin` and its lines inked (see INK)."""
    lab = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
    photo_ab = skin.crop(cv2.cvtColor(photo, cv2.COLOR_RGB2LAB)).reshape(-1, 3)[:, 1:].astype(np.float32)
    face_ab = skin.crop(lab).reshape(-1, 3)[:, 1:]
    lab[..., 1:] += photo_ab.mean(axis=0) - face_ab.mean(axis=0)
    lightness = lab[..., 0]
    lines = cv2.morphologyEx(
        lightness, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    )
    lab[..., 0] = lightness - INK * np.maximum(lines - INK_THRESHOLD, 0)
    return cv2.cvtColor(np.clip(np.round(lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def stylize_faces(
    photo: np.ndarray,
    output: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    boxes: list[Box] | None = None,
) -> np.ndarray:
    """`output` (the whole-image result for `photo`, same size) with every detected face stylized on its own
    and blended in. run: (h, w, 3) uint8 RGB -> the generator's (h, w, 3) uint8 output."""
    h, w = photo.shape[:2]
    out = output.copy()
    for box in detect_faces(photo) if boxes is None else boxes:
        region = box.scaled(REGION_SCALE, w, h)
        crop = region.crop(photo)
        scale = max(1.0, FACE_SIDE / box.w)
        size = (round(region.w * scale), round(region.h * scale))
        enlarged = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC) if scale > 1 else crop
        face = run(enlarged)
        if scale > 1:
            face = cv2.resize(face, (region.w, region.h), interpolation=cv2.INTER_AREA)
        inner = Box(box.x - region.x, box.y - region.y, box.w, box.h)
        face = portrait_finish(face, crop, skin_region(inner, region.w, region.h))
        mask = face_mask(region, box)[..., None]
        base = region.crop(out).astype(np.float32)
        blended = mask * face.astype(np.float32) + (1 - mask) * base
        out[region.y : region.y + region.h, region.x : region.x + region.w] = np.round(blended).astype(
            np.uint8
        )
    return out
