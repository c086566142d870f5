"""The built-in style: a full-width AnimeGANv2 generator learned from the shared (photo, Hayao output) pairs,
and its fast student. Every step is resumable; run them in order:

  python scripts/builtin_style.py train --minutes 60        # again and again: each run resumes the last
  python scripts/builtin_style.py validate                  # PSNR/SSIM table on the held-out pairs
  python scripts/builtin_style.py export                    # -> models/builtin/hayao-builtin.safetensors
  python scripts/builtin_style.py distill --minutes 30      # the width-16 student, from the export
  python scripts/builtin_style.py export-student            # -> models/builtin/hayao-builtin-fast.safetensors
  python scripts/builtin_style.py figure                    # -> docs/builtin-style.jpg (samples/ before/after)
  python scripts/builtin_style.py save-resume               # newest checkpoints -> models/training/ (commit them)

The pairs are ../shared/data/{photos,hayao_reference}: the original AnimeGAN's published Hayao outputs, under
its non-commercial terms, which therefore apply to the models learned from them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PHOTOS, TARGETS = SHARED / "photos", SHARED / "hayao_reference"
RUNS = ROOT / "runs"
MODELS = ROOT / "models" / "builtin"
TEACHER_RUN, STUDENT_RUN = RUNS / "builtin-hayao", RUNS / "builtin-hayao-fast"
TEACHER_FILE, STUDENT_FILE = MODELS / "hayao-builtin.safetensors", MODELS / "hayao-builtin-fast.safetensors"
# The newest checkpoint of each run, committed (one file each, replaced), so a later session on a fresh machine
# resumes the run instead of starting over; `save-resume` writes them, `train`/`distill` read them back.
RESUME = ROOT / "models" / "training"
TEACHER_RESUME, STUDENT_RESUME = RESUME / "hayao-builtin.resume.pt", RESUME / "hayao-builtin-fast.resume.pt"
# Held out of all training, chosen before the first step: every fifth pair (9 of the 46).
VAL_NAMES = tuple(f"photo_{i:02d}" for i in range(5, 47, 5))
LICENSE_NOTE = (
    "learned from the original AnimeGAN's published Hayao example outputs (TachibanaYoshino/AnimeGAN, "
    "result/Hayao); that repository's non-commercial terms apply to this model"
)
SEED = 0

logger = logging.getLogger("builtin_style")


def split_folders(kind: str) -> tuple[Path, Path]:
    """data/builtin-split/<kind>/{photos,targets}: links to the shared pairs of the train or val split."""
    if not PHOTOS.is_dir() or not TARGETS.is_dir():
        raise SystemExit(f"the shared pairs are not at {SHARED}; this script needs them")
    base = ROOT / "data" / "builtin-split" / kind
    out = base / "photos", base / "targets"
    for folder in out:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for photo in sorted(PHOTOS.iterdir()):
        if (photo.stem in VAL_NAMES) == (kind == "val"):
            (out[0] / photo.name).symlink_to(photo)
            (out[1] / photo.name).symlink_to(TARGETS / photo.name)
    return out


def teacher_config(steps: int):
    from animegan.training import TrainConfig

    return TrainConfig.from_preset(
        "paired", seed=SEED, precision="auto", max_total_steps=steps, checkpoint_every=250, sample_every=250
    )


def student_config(steps: int):
    from animegan.training import TrainConfig

    return TrainConfig.from_preset(
        "distill",
        seed=SEED,
        precision="auto",
        teacher=str(TEACHER_FILE),
        max_total_steps=steps,
        checkpoint_every=250,
        sample_every=250,
    )


def run_training(
    config, run_dir: Path, resume: Path, minutes: float, photos: Path, targets: Path | None
) -> None:
    from animegan.training import Trainer
    from animegan.training import checkpoint as ckpt

    if ckpt.latest_checkpoint(run_dir) is None and resume.is_file():
        step = int(ckpt.load_checkpoint(resume)["step"])
        ckpt.checkpoint_path(run_dir, step).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(resume, ckpt.checkpoint_path(run_dir, step))
        logger.info(
            "%s: resuming from the committed checkpoint %s (step %d)", run_dir.name, resume.name, step
        )
    trainer = Trainer(config, photos, None, run_dir, targets=targets)
    result = trainer.run(max_seconds=minutes * 60)
    logger.info("%s: %s at step %d of %d", run_dir.name, result.status, result.step, result.total_steps)


def validate(model_file: Path, out_json: Path | None) -> dict:
    from animegan.evaluation import mean_score, score_pairs
    from animegan.weights import load_generator

    photos, targets = split_folders("val")
    scores = score_pairs(load_generator(model_file).model, photos, targets)
    mean = mean_score(scores)
    print(f"{'photo':<10} {'PSNR':>6} {'SSIM':>6} | {'base PSNR':>9} {'base SSIM':>9}")
    for s in [*scores, mean]:
        print(f"{s.name:<10} {s.psnr:6.2f} {s.ssim:6.3f} | {s.baseline_psnr:9.2f} {s.baseline_ssim:9.3f}")
    print(
        f"gain over the photo: {mean.psnr - mean.baseline_psnr:+.2f} dB PSNR, {mean.ssim - mean.baseline_ssim:+.3f} SSIM"
    )
    table = {"model": model_file.name, "pairs": [s.to_dict() for s in scores], "mean": mean.to_dict()}
    if out_json is not None:
        out_json.write_text(json.dumps(table, indent=2) + "\n")
    return table


def export(run_dir: Path, out: Path, name: str, description: str) -> None:
    """The run's latest generator as a public-model export, stored in fp16 (half the bytes in git; loads as fp32)."""
    import torch

    from animegan.training import checkpoint as ckpt
    from animegan.weights import load_generator, save_generator

    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise SystemExit(f"{run_dir} has no checkpoint; train first")
    loaded = load_generator(latest)
    step = loaded.metadata.get("step")
    # The description travels in the file's metadata, so `animegan info` and GET /v1/models show it.
    metadata = {"name": name, "source": "builtin", "step": step, "description": description}
    save_generator(out, loaded.model, metadata=metadata, dtype=torch.float16)
    logger.info("exported %s (step %s) to %s", latest.name, step, out)


def figure(out: Path, cell_width: int = 320) -> None:
    """The README's before/after figure: the project's own samples/ photos over both built-in models' outputs."""
    import numpy as np
    from PIL import Image

    from animegan.inference import Stylizer
    from animegan.weights import load_generator

    rows = [[Image.open(p).convert("RGB") for p in sorted((ROOT / "samples").glob("*.jpg"))]]
    for model_file in (TEACHER_FILE, STUDENT_FILE):
        if model_file.is_file():
            stylizer = Stylizer(load_generator(model_file).model)
            rows.append([stylizer.stylize(photo) for photo in rows[0]])
    cells = [
        [np.asarray(im.resize((cell_width, round(im.height * cell_width / im.width)))) for im in row]
        for row in rows
    ]
    grid = np.concatenate([np.concatenate(row, axis=1) for row in cells], axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out, quality=88)
    logger.info(
        "wrote %s (%d rows: photos, then %s)",
        out,
        len(rows),
        ", ".join(f.stem for f in (TEACHER_FILE, STUDENT_FILE)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["train", "validate", "export", "distill", "export-student", "figure", "save-resume"],
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of this run")
    parser.add_argument("--steps", type=int, default=20000, help="the whole run's step count")
    parser.add_argument("--model", type=Path, help="validate: this file (default: the built-in export)")
    parser.add_argument("--json", type=Path, help="validate: also write the table here")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    started = time.monotonic()
    if args.command == "train":
        photos, targets = split_folders("train")
        run_training(teacher_config(args.steps), TEACHER_RUN, TEACHER_RESUME, args.minutes, photos, targets)
    elif args.command == "distill":
        if not TEACHER_FILE.is_file():
            raise SystemExit(f"{TEACHER_FILE} is missing: export the teacher first")
        photos, _ = split_folders("train")
        run_training(student_config(args.steps), STUDENT_RUN, STUDENT_RESUME, args.minutes, photos, None)
    elif args.command == "validate":
        validate(args.model or TEACHER_FILE, args.json)
    elif args.command == "save-resume":
        from animegan.training import checkpoint as ckpt

        for run_dir, resume in ((TEACHER_RUN, TEACHER_RESUME), (STUDENT_RUN, STUDENT_RESUME)):
            latest = ckpt.latest_checkpoint(run_dir)
            if latest is not None:
                resume.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(latest, resume)
                logger.info("%s -> %s", latest, resume)
    elif args.command == "figure":
        figure(ROOT / "docs" / "builtin-style.jpg")
    elif args.command == "export":
        description = f"AnimeGANv2 (full width), Hayao-like style {LICENSE_NOTE}"
        export(TEACHER_RUN, TEACHER_FILE, "hayao-builtin", description)
    else:
        description = f"fast width-16 student distilled from hayao-builtin, {LICENSE_NOTE}"
        export(STUDENT_RUN, STUDENT_FILE, "hayao-builtin-fast", description)
    logger.info("%s took %.1f min", args.command, (time.monotonic() - started) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
