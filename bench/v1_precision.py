"""Where v1's bf16 error comes from, and what keeping submodules in fp32 buys.

1. Error budget: the fp32 generator with one block at a time rounded to bf16 (weights and activations); each
   block's share of the summed squared output error. Early blocks dominate: every later per-channel norm
   re-amplifies what they round.
2. PSNR against fp32 of the bf16 fast path keeping nothing, b1 (the default, GeneratorV1.fp32_submodules),
   or b1 and b2 in fp32, on shared photos and the smooth synthetic image.

Usage: python bench/v1_precision.py [--side 256] [--photos photo_01.jpg photo_07.jpg ...]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inference as bench  # noqa: E402  (bench/inference.py: test images and the seeded generator)

from animegan.inference.stylizer import reduced_precision_copy  # noqa: E402

BLOCKS = ["b1.0", "b1.1", "b1.2", "b2", "m", "u2", "u1", "out_layer"]
KEEP = {"nothing": (), "b1 (default)": ("b1",), "b1, b2": ("b1", "b2")}


class Bf16Block(torch.nn.Module):
    """Runs a copy of `module` in bf16 inside the fp32 model."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module).to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(torch.bfloat16)).float()


def to_input(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * np.log10(4.0 / mse(a, b))  # range [-1, 1]: peak-to-peak 2


def load(name: str, side: int) -> tuple[Image.Image, str]:
    bench.PHOTO = bench.PHOTO.with_name(name)
    return bench.test_image(side)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--side", type=int, default=256)
    p.add_argument(
        "--photos", nargs="+", default=["photo_01.jpg", "photo_07.jpg", "photo_20.jpg", "photo_33.jpg"]
    )
    args = p.parse_args()
    torch.set_grad_enabled(False)
    model = bench.generator("v1", None)

    first, label = load(args.photos[0], args.side)
    x = to_input(first)
    ref = model(x)
    errors = {}
    for name in BLOCKS:
        mixed = copy.deepcopy(model)
        parent, _, leaf = name.rpartition(".")
        setattr(mixed.get_submodule(parent), leaf, Bf16Block(model.get_submodule(name)))
        errors[name] = mse(ref, mixed(x))
    total = sum(errors.values())
    print(
        f"Error budget, {label} at {args.side} px: share of the summed squared error when only that block is bf16"
    )
    print("| block | share |\n|---|---|")
    for name, err in errors.items():
        print(f"| {name} | {err / total:.0%} |")

    print(f"\nPSNR (dB) of the bf16 fast path against fp32 at {args.side} px, by what stays fp32")
    print("| image | " + " | ".join(KEEP) + " |\n|---|" + "---|" * len(KEEP))
    fast = {key: reduced_precision_copy(model, torch.bfloat16, keep) for key, keep in KEEP.items()}
    for name in [*args.photos, "synthetic"]:
        image, label = load(name, args.side)  # a missing file (here: "synthetic") gives the synthetic image
        x = to_input(image)
        ref = model(x)
        xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        cells = [f"{psnr(ref, net(xb)):.1f}" for net in fast.values()]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
