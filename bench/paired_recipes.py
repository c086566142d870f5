"""Which paired recipe learns the look of the targets: fine-tunes of one generator, scored side by side.

Every recipe starts from the same generator (default: the shipped hayao-builtin) and a fresh discriminator, with
the same seed, data order and crops, for the same number of steps on the train split of scripts/builtin_style.py;
then PSNR, SSIM and the style statistics (animegan/style_metrics.py) of its output against the original
AnimeGAN's are measured on the validation split, beside the photo's and the target's own. Writes a JSON of every
figure, each recipe's generator, and one picture: validation crops, photo | each recipe | target.

  .venv/bin/python bench/paired_recipes.py --steps 600 --out runs/recipes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animegan.evaluation import mean_score, score_pairs, score_table
from animegan.inference import Stylizer
from animegan.inference.stylizer import InferenceOptions
from animegan.training import TrainConfig, Trainer
from animegan.weights import load_generator, save_generator

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("builtin_style", ROOT / "scripts" / "builtin_style.py")
builtin_style = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builtin_style)

_GAN = {"adv": 1.0}
_EDGE = {**_GAN, "d_smooth": 1.0}
_FM = {**_EDGE, "feature_matching": 1.0}
_AUG = "color,translation,cutout"
_SHIPPED = {k: v for k, v in builtin_style.TEACHER_LOSSES.items() if k not in ("pixel", "ssim")}
_POLISH = {"d_augment": _AUG, "lr_schedule": "cosine", "lr_warmup_steps": 50, "lr_final_ratio": 0.1}
# name -> (TrainConfig overrides, paired loss weights on top of L1 + SSIM)
RECIPES: dict[str, tuple[dict, dict]] = {
    "L1 + SSIM (continued)": ({}, {}),
    "+ LSGAN 0.5": ({}, {"adv": 0.5}),
    "+ LSGAN 1": ({}, _GAN),
    "+ LSGAN 1 + edge negatives": ({}, _EDGE),
    "+ LSGAN + edge + FM": ({}, _FM),
    "+ LSGAN + edge + FM + DiffAug": ({"d_augment": _AUG}, _FM),
    "+ ... + colour stats": ({"d_augment": _AUG}, {**_FM, "color_stats": 1.0}),
    "+ ... + colour stats + outline": ({"d_augment": _AUG}, {**_FM, "color_stats": 1.0, "outline": 1.0}),
    "+ LSGAN 1 + edge negatives + DiffAug": ({"d_augment": _AUG}, _EDGE),
    "+ LSGAN 1 + edge negatives 0.5 + colour stats + DiffAug (the long run's terms)": (
        {"d_augment": _AUG},
        {**_GAN, "d_smooth": 0.5, "color_stats": 1.0},
    ),
    # Polishing the shipped adversarial model (--init its file): its own terms plus the outline-map L1, which
    # rewards a line where the target has one and penalises one where it has none (correlation, GMSD).
    "polish: shipped terms (control)": (_POLISH, _SHIPPED),
    "polish: shipped terms + outline 2": (_POLISH, {**_SHIPPED, "outline": 2.0}),
    "polish: edge negatives 1 + outline excess 1": (
        _POLISH,
        {**_SHIPPED, "d_smooth": 1.0, "outline_excess": 1.0},
    ),
    "polish: LSGAN 2": (_POLISH, {**_SHIPPED, "adv": 2.0}),
    "polish: edge negatives 1": (_POLISH, {**_SHIPPED, "d_smooth": 1.0}),
    "polish: LSGAN 3": (_POLISH, {**_SHIPPED, "adv": 3.0}),
    "polish: LSGAN 2 + edge negatives 1": (_POLISH, {**_SHIPPED, "adv": 2.0, "d_smooth": 1.0}),
    "polish: shipped terms + outline 0.5": (_POLISH, {**_SHIPPED, "outline": 0.5}),
}
# Crops of validation photos shown in the picture: (name, top, left) at the reference size, 256 px square.
PICTURE_CROPS = (("photo_05", 300, 500), ("photo_20", 200, 400), ("photo_35", 250, 600))
CROP = 256


def recipe_config(args: argparse.Namespace, overrides: dict, weights: dict) -> TrainConfig:
    return TrainConfig.from_preset(
        "paired",
        image_size=args.image_size,
        batch_size=args.batch,
        precision=args.precision,
        max_total_steps=args.steps,
        checkpoint_every=10**6,
        sample_every=0,
        init_generator=str(args.init),
        skip_init=True,
        g_lr=args.g_lr,
        d_lr=args.d_lr,
        seed=0,
        paired_losses={"pixel": 1.0, "ssim": 1.0, **weights},
        **overrides,
    )


def crops_of(model: torch.nn.Module) -> list[np.ndarray]:
    """The picture's crops of the model's outputs (the photos' when model is None)."""
    photos, _ = builtin_style.split_folders("val")
    stylizer = None if model is None else Stylizer(model, options=InferenceOptions(precision="fp32"))
    out = []
    for name, top, left in PICTURE_CROPS:
        image = Image.open(photos / f"{name}.jpg").convert("RGB")
        size = (image.width - image.width % 32, image.height - image.height % 32)  # the reference size
        image = image.resize(size, Image.BILINEAR) if stylizer is None else stylizer.stylize(image)
        out.append(np.asarray(image)[top : top + CROP, left : left + CROP])
    return out


def target_crops() -> list[np.ndarray]:
    _, targets = builtin_style.split_folders("val")
    return [
        np.asarray(Image.open(targets / f"{name}.jpg").convert("RGB"))[top : top + CROP, left : left + CROP]
        for name, top, left in PICTURE_CROPS
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--g-lr", type=float, default=5e-5)
    parser.add_argument("--d-lr", type=float, default=1e-4)
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--init", type=Path, default=ROOT / "models" / "builtin" / "hayao-builtin.safetensors"
    )
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), help="names from RECIPES")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    photos, targets = builtin_style.split_folders("train")
    val_photos, val_targets = builtin_style.split_folders("val")
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    print(
        f"fine-tunes of {args.init.name}: {args.steps} steps, {args.image_size} px crops, batch {args.batch}, "
        f"G lr {args.g_lr}, D lr {args.d_lr}, {args.threads} threads",
        flush=True,
    )
    start_model = load_generator(args.init).model.eval()
    columns = [("photo", crops_of(None)), ("start", crops_of(start_model))]
    if "start" not in results:
        results["start"] = mean_score(score_pairs(start_model, val_photos, val_targets)).to_dict()
    for i, name in enumerate(args.recipes):
        overrides, weights = RECIPES[name]
        model_file = args.out / f"recipe-{i}.safetensors"
        if name not in results or not model_file.is_file():
            trainer = Trainer(
                recipe_config(args, overrides, weights), photos, None, args.out / f"run-{i}", targets=targets
            )
            started = time.monotonic()
            trainer.run()
            per_step = (time.monotonic() - started) / args.steps
            model = trainer.generator.eval()
            save_generator(model_file, model, metadata={"recipe": name, "steps": args.steps})
            mean = mean_score(score_pairs(model, val_photos, val_targets))
            results[name] = {**mean.to_dict(), "seconds_per_step": per_step, "file": model_file.name}
            results_file.write_text(json.dumps(results, indent=2) + "\n")
        model = load_generator(model_file).model.eval()
        columns.append((name, crops_of(model)))
        print(f"\n== {name} ({results[name]['seconds_per_step']:.2f} s/step)", flush=True)
        print(score_table(_score_from(results[name])), flush=True)
    print("\n" + markdown_table(results, ["start", *args.recipes]))
    columns.append(("target", target_crops()))
    grid = np.concatenate([np.concatenate(c, axis=0) for _, c in columns], axis=1)
    Image.fromarray(grid).save(args.out / "recipes.jpg", quality=90)
    print(f"\ncolumns of {args.out / 'recipes.jpg'}: " + " | ".join(n for n, _ in columns))
    return 0


def markdown_table(results: dict, names: list[str]) -> str:
    """The comparison as a markdown table: the photo and target rows first, then each recipe."""
    head = "| | s/step | PSNR | SSIM | GMSD | outline energy | colourfulness | outline corr | tone-aligned PSNR |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    first = _score_from(results["start"])
    p, t = first.photo, first.target
    lines.append(
        f"| the photo | - | {first.baseline_psnr:.2f} | {first.baseline_ssim:.3f} | {p.gmsd:.3f} | "
        f"{p.outline_energy:.2f} | {p.colourfulness:.1f} | {p.outline_corr:.3f} | {p.tone_psnr:.2f} |"
    )
    for name in names:
        s = _score_from(results[name])
        o = s.output
        per_step = results[name].get("seconds_per_step")
        lines.append(
            f"| {name} | {'-' if per_step is None else f'{per_step:.2f}'} | {s.psnr:.2f} | {s.ssim:.3f} | "
            f"{o.gmsd:.3f} | {o.outline_energy:.2f} | {o.colourfulness:.1f} | {o.outline_corr:.3f} | {o.tone_psnr:.2f} |"
        )
    lines.append(f"| the target | - | - | - | - | {t.outline_energy:.2f} | {t.colourfulness:.1f} | - | - |")
    return "\n".join(lines)


def _score_from(data: dict):
    from animegan.evaluation import PairScore
    from animegan.style_metrics import StyleStats

    fields = {k: v for k, v in data.items() if k in PairScore.__dataclass_fields__}
    for part in ("output", "photo", "target"):
        fields[part] = StyleStats(**fields[part])
    return PairScore(**fields)


if __name__ == "__main__":
    raise SystemExit(main())
