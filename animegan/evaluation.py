"""How close a generator comes to known targets: PSNR, SSIM and the style statistics (animegan.style_metrics)
of its output, of the photo itself (the "did nothing" baseline) and of the target, at the target's size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
from PIL import Image
from torch import nn

from animegan.data.dataset import ImageSource
from animegan.data.paired import load_pairs
from animegan.inference.stylizer import InferenceOptions, Stylizer
from animegan.metrics import psnr_uint8, ssim_uint8
from animegan.style_metrics import StyleStats, style_stats


@dataclass
class PairScore:
    name: str
    psnr: float  # output vs target, dB
    ssim: float
    baseline_psnr: float  # photo (at the target's size) vs target
    baseline_ssim: float
    output: StyleStats  # the output's style statistics against the target
    photo: StyleStats  # the photo's, against the target
    target: StyleStats  # the target's own (outline energy, colourfulness)

    def to_dict(self) -> dict:
        return asdict(self)


def score_images(name: str, photo: np.ndarray, output: np.ndarray, target: np.ndarray) -> PairScore:
    """Scores of one (photo, output, target) triple of (H, W, 3) uint8 images of the target's size."""
    return PairScore(
        name,
        psnr_uint8(output, target),
        ssim_uint8(output, target),
        psnr_uint8(photo, target),
        ssim_uint8(photo, target),
        style_stats(output, target),
        style_stats(photo, target),
        style_stats(target),
    )


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
        scores.append(score_images(name, photo, out, target))
    return scores


def _mean_stats(stats: list[StyleStats]) -> StyleStats:
    values = {}
    for f in fields(StyleStats):
        column = [getattr(s, f.name) for s in stats]
        values[f.name] = None if any(v is None for v in column) else float(np.mean(column))
    return StyleStats(**values)


def mean_score(scores: list[PairScore]) -> PairScore:
    def mean(field: str) -> float:
        return float(np.mean([getattr(s, field) for s in scores]))

    return PairScore(
        "mean",
        mean("psnr"),
        mean("ssim"),
        mean("baseline_psnr"),
        mean("baseline_ssim"),
        _mean_stats([s.output for s in scores]),
        _mean_stats([s.photo for s in scores]),
        _mean_stats([s.target for s in scores]),
    )


def score_table(mean: PairScore) -> str:
    """The validation table of the style issue: the photo, the model and the target, one row each."""
    head = f"{'':<8} {'PSNR':>6} {'SSIM':>6} {'GMSD':>6} {'outline':>8} {'colour':>7} {'corr':>6} {'tonePSNR':>8}"

    def row(label: str, psnr: float | None, ssim: float | None, s: StyleStats) -> str:
        def num(v: float | None, spec: str, width: int) -> str:
            return f"{'-':>{width}}" if v is None else f"{v:{width}{spec}}"

        return (
            f"{label:<8} {num(psnr, '.2f', 6)} {num(ssim, '.3f', 6)} {num(s.gmsd, '.3f', 6)} "
            f"{num(s.outline_energy, '.2f', 8)} {num(s.colourfulness, '.1f', 7)} {num(s.outline_corr, '.3f', 6)} "
            f"{num(s.tone_psnr, '.2f', 8)}"
        )

    return "\n".join(
        [
            head,
            row("photo", mean.baseline_psnr, mean.baseline_ssim, mean.photo),
            row("model", mean.psnr, mean.ssim, mean.output),
            row("target", None, None, mean.target),
        ]
    )
