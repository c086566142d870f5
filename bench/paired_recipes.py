"""Which paired recipe learns the Hayao pairs fastest: short runs of each, scored on the held-out pairs.

Each recipe trains a fresh generator for the same number of steps on the train split of scripts/builtin_style.py,
then PSNR/SSIM of its output against the original AnimeGAN's output are measured on the validation split, beside
the photo's own figures (the "did nothing" baseline). Same seed, data order and crops for every recipe.

  .venv/bin/python bench/paired_recipes.py --steps 300 --width 16 --image-size 128
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path

import torch

from animegan.evaluation import mean_score, score_pairs
from animegan.training import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("builtin_style", ROOT / "scripts" / "builtin_style.py")
builtin_style = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builtin_style)

# name -> (TrainConfig overrides, paired loss weights); init_epochs counts epochs of 37 pairs / batch.
RECIPES: dict[str, tuple[dict, dict]] = {
    "L1, no warm-up": ({"init_epochs": 0}, {"pixel": 1.0, "ssim": 0.0}),
    "L1": ({}, {"pixel": 1.0, "ssim": 0.0}),
    "L1 + SSIM": ({}, {"pixel": 1.0, "ssim": 1.0}),
    "L1 + SSIM + gradient": ({}, {"pixel": 1.0, "ssim": 1.0, "gradient": 1.0}),
    "L1 + SSIM + colour": ({}, {"pixel": 1.0, "ssim": 1.0, "color": 1.0}),
    "L1 + SSIM + GAN 0.05": ({}, {"pixel": 1.0, "ssim": 1.0, "adv": 0.05}),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=16, help="generator base_channels (32 = full v2)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), help="names from RECIPES")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos, targets = builtin_style.split_folders("train")
    val_photos, val_targets = builtin_style.split_folders("val")
    print(f"{args.steps} steps, width {args.width}, {args.image_size} px crops, batch {args.batch}, bf16")
    print(f"{'recipe':<24} {'s/step':>6} {'PSNR':>6} {'SSIM':>6} | {'base PSNR':>9} {'base SSIM':>9}")
    for name in args.recipes:
        overrides, weights = RECIPES[name]
        config = TrainConfig.from_preset(
            "paired",
            **{
                "generator": {"base_channels": args.width},
                "image_size": args.image_size,
                "batch_size": args.batch,
                "precision": "bf16",
                "max_total_steps": args.steps,
                "checkpoint_every": 10**6,
                "sample_every": 0,
                "paired_losses": weights,
                **overrides,
            },
        )
        run_dir = Path(tempfile.mkdtemp(prefix="paired-recipe-"))
        try:
            trainer = Trainer(config, photos, None, run_dir, targets=targets)
            started = time.monotonic()
            trainer.run()
            per_step = (time.monotonic() - started) / args.steps
            mean = mean_score(score_pairs(trainer.generator.eval(), val_photos, val_targets))
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        print(
            f"{name:<24} {per_step:6.2f} {mean.psnr:6.2f} {mean.ssim:6.3f} | "
            f"{mean.baseline_psnr:9.2f} {mean.baseline_ssim:9.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
