"""How close a generator comes to known targets: PSNR and SSIM of its output and of the photo itself
(the "did nothing" baseline) against each target, at the target's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image
from torch import nn

from animegan.data.dataset import ImageSource
from animegan.data.paired import load_pairs
from animegan.inference.stylizer import InferenceOptions, Stylizer
from animegan.metrics import psnr_uint8, ssim_uint8


@dataclass
class PairScore:
    name: str
    psnr: float  # output vs target, dB
    ssim: float
    baseline_psnr: float  # photo (at the target's size) vs target
    baseline_ssim: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_pairs(
    model: nn.Module,
    photos: ImageSource,
    targets: ImageSource,
    options: InferenceOptions | None = None,
    device: str = "cpu",
) -> list[PairScore]:
    """Stylize each photo of the pairs (reference size rule by default, fp32) and score it against its target."""
    pairs = load_pairs(photos, targets)
    stylizer = Stylizer(model, device, options or InferenceOptions(precision="fp32"))
    scores = []
    for name, photo, target in zip(pairs.names, pairs.photos, pairs.targets, strict=True):
        out = np.asarray(stylizer.stylize(Image.fromarray(photo)).convert("RGB"))
        if out.shape != target.shape:  # a size mode other than "reference" changed the size
            out = cv2.resize(out, target.shape[1::-1], interpolation=cv2.INTER_AREA)
        scores.append(
            PairScore(
                name,
                psnr_uint8(out, target),
                ssim_uint8(out, target),
                psnr_uint8(photo, target),
                ssim_uint8(photo, target),
            )
        )
    return scores


def mean_score(scores: list[PairScore]) -> PairScore:
    def mean(field: str) -> float:
        return float(np.mean([getattr(s, field) for s in scores]))

    return PairScore("mean", mean("psnr"), mean("ssim"), mean("baseline_psnr"), mean("baseline_ssim"))
