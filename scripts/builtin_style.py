"""The built-in style: a full-width AnimeGANv2 generator learned from the shared (photo, Hayao output) pairs,
and its fast student. Every step is resumable; run them in order:

  python scripts/builtin_style.py train --minutes 60        # the adversarial run (its step 1,000 is committed)
  python scripts/builtin_style.py polish                    # 400 steps from that step 1,000: the shipped teacher
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
TEACHER_RUN, POLISH_RUN = RUNS / "builtin-hayao-gan", RUNS / "builtin-hayao-polish"
STUDENT_RUN = RUNS / "builtin-hayao-fast-v3"
TEACHER_FILE, STUDENT_FILE = MODELS / "hayao-builtin.safetensors", MODELS / "hayao-builtin-fast.safetensors"
# The newest checkpoint of each long run, committed (one file each, replaced), so a later session on a fresh
# machine resumes the run instead of starting over; `save-resume` writes them, `train`/`distill` read them back.
# (The polish is 400 steps, about 5 minutes: it is run again rather than resumed.)
RESUME = ROOT / "models" / "training"
TEACHER_RESUME, STUDENT_RESUME = (
    RESUME / f"{TEACHER_RUN.name}.resume.pt",
    RESUME / f"{STUDENT_RUN.name}.resume.pt",
)
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


# The teacher's recipe, chosen by bench/paired_recipes.py (bench/RESULTS-paired.md, "Style strength"): a fine-tune
# of the L1 + SSIM generator (step 4,347) with the adversarial terms that draw what regression averages away.
TEACHER_START = ROOT / "models" / "training" / "hayao-builtin-l1ssim-4347.safetensors"
TEACHER_LOSSES = {"pixel": 1.0, "ssim": 1.0, "adv": 1.0, "d_smooth": 0.5, "color_stats": 1.0}
TEACHER_RECIPE = {
    "image_size": 128,  # the recipe comparison's crops: the same D patches, 4.5x the steps of 256 px per hour
    "batch_size": 4,
    "g_lr": 5e-5,
    "d_lr": 1e-4,
    "lr_schedule": "cosine",
    "lr_warmup_steps": 100,  # D starts from scratch: G's adversarial pull grows as D learns
    "lr_final_ratio": 0.1,
    "d_augment": "color,translation,cutout",  # 37 pairs: keep D from memorising them
    "skip_init": True,
}


def paired_config(
    steps: int, start: Path, losses: dict, recipe: dict, checkpoint_every: int, sample_every: int
):
    """A paired fine-tune of `start` on the train split (the long run and the polish differ only in these)."""
    from animegan.training import TrainConfig

    return TrainConfig.from_preset(
        "paired",
        seed=SEED,
        precision="auto",
        max_total_steps=steps,
        checkpoint_every=checkpoint_every,
        sample_every=sample_every,
        init_generator=str(start),
        paired_losses=losses,
        **recipe,
    )


def teacher_config(steps: int):
    return paired_config(steps, TEACHER_START, TEACHER_LOSSES, TEACHER_RECIPE, 250, 250)


# The polish (bench/RESULTS-paired.md, "The polish"): the adversarial run's step 1,000 fine-tuned 400 steps at half
# its learning rate with a fresh D. Past step 1,000 the long run drew more line and placed it worse; a short,
# gentle continuation places the lines better (correlation, GMSD) and the heavier LSGAN weight keeps their amount.
POLISH_START = ROOT / "models" / "training" / "hayao-builtin-gan-1000.safetensors"
POLISH_LOSSES = {**TEACHER_LOSSES, "adv": 2.0, "d_smooth": 1.0}
POLISH_STEPS = 400
POLISH_RECIPE = {
    **TEACHER_RECIPE,
    "g_lr": 2.5e-5,
    "lr_warmup_steps": 50,
}


def polish_config():
    return paired_config(POLISH_STEPS, POLISH_START, POLISH_LOSSES, POLISH_RECIPE, 100, 0)


# The student: a fine-tune of the previous student (3,243 steps of L1 + SSIM distillation, then 996 towards the
# step-1,000 teacher) towards the polished one, with a decaying learning rate; the outline-map term because a
# teacher's lines are a function of the photo (nothing to average away) that the narrow student drew 16% too faint.
STUDENT_START = ROOT / "models" / "training" / "hayao-builtin-fast-v2-996.safetensors"
STUDENT_RECIPE = {
    "g_lr": 1e-4,
    "lr_schedule": "cosine",
    "lr_final_ratio": 0.1,
    "paired_losses": {"pixel": 1.0, "ssim": 1.0, "outline": 0.5},
}


def student_config(steps: int):
    from animegan.training import TrainConfig

    return TrainConfig.from_preset(
        "distill",
        seed=SEED,
        precision="auto",
        teacher=str(TEACHER_FILE),
        init_generator=str(STUDENT_START),
        max_total_steps=steps,
        checkpoint_every=250,
        sample_every=250,
        **STUDENT_RECIPE,
    )


def run_training(
    config, run_dir: Path, resume: Path | None, minutes: float, photos: Path, targets: Path | None
) -> None:
    from animegan.training import Trainer
    from animegan.training import checkpoint as ckpt

    if ckpt.latest_checkpoint(run_dir) is None and resume is not None and resume.is_file():
        step = int(ckpt.load_checkpoint(resume)["step"])
        ckpt.checkpoint_path(run_dir, step).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(resume, ckpt.checkpoint_path(run_dir, step))
        logger.info(
            "%s: resuming from the committed checkpoint %s (step %d)", run_dir.name, resume.name, step
        )
    trainer = Trainer(config, photos, None, run_dir, targets=targets)
    result = trainer.run(max_seconds=minutes * 60)
    logger.info("%s: %s at step %d of %d", run_dir.name, result.status, result.step, result.total_steps)


PORTRAIT = ROOT / "samples" / "portrait" / "astronaut.jpg"


def validate(model_file: Path, out_json: Path | None) -> dict:
    """The held-out pairs' PSNR, SSIM and style statistics (photo, model, target), and the portrait's face."""
    from animegan.evaluation import mean_score, score_pairs, score_table
    from animegan.weights import load_generator

    photos, targets = split_folders("val")
    model = load_generator(model_file).model
    scores = score_pairs(model, photos, targets)
    mean = mean_score(scores)
    print(
        f"{'photo':<10} {'PSNR':>6} {'SSIM':>6} {'outline':>8} {'colour':>7} {'corr':>6} | {'base PSNR':>9}"
    )
    for s in [*scores, mean]:
        o = s.output
        print(
            f"{s.name:<10} {s.psnr:6.2f} {s.ssim:6.3f} {o.outline_energy:8.2f} {o.colourfulness:7.1f} "
            f"{o.outline_corr:6.3f} | {s.baseline_psnr:9.2f}"
        )
    print(score_table(mean))
    face = portrait_face(model)
    print(
        f"portrait face ({PORTRAIT.name}): hue shift {face['hue_shift']:.1f} deg, colourfulness "
        f"{face['colourfulness_ratio']:.2f}x and outline energy {face['outline_ratio']:.2f}x the photo's"
    )
    table = {
        "model": model_file.name,
        "pairs": [s.to_dict() for s in scores],
        "mean": mean.to_dict(),
        "portrait_face": face,
    }
    if out_json is not None:
        out_json.write_text(json.dumps(table, indent=2) + "\n")
    return table


def portrait_face(model, faces: bool = True) -> dict:
    """The face statistics of the portrait sample stylized with default options (the portrait path on)."""
    import numpy as np
    from PIL import Image

    from animegan.inference import InferenceOptions, Stylizer
    from animegan.inference.faces import detect_faces, face_stats

    photo = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    out = np.asarray(Stylizer(model, options=InferenceOptions(faces=faces)).stylize(Image.fromarray(photo)))
    (box,) = detect_faces(photo)
    return face_stats(photo, out, box).to_dict()


def export(run_dir: Path, out: Path, name: str, description: str, step: int | None = None) -> None:
    """The run's generator (its latest checkpoint, or that of `step`) as a public-model export, stored in fp16
    (half the bytes in git; loads as fp32)."""
    import torch

    from animegan.training import checkpoint as ckpt
    from animegan.weights import load_generator, save_generator

    latest = ckpt.latest_checkpoint(run_dir) if step is None else ckpt.checkpoint_path(run_dir, step)
    if latest is None or not latest.is_file():
        raise SystemExit(
            f"{run_dir} has no checkpoint{'' if step is None else f' of step {step}'}; train first"
        )
    loaded = load_generator(latest)
    step = loaded.metadata.get("step")
    # The description travels in the file's metadata, so `animegan info` and GET /v1/models show it.
    metadata = {"name": name, "source": "builtin", "step": step, "description": description}
    save_generator(out, loaded.model, metadata=metadata, dtype=torch.float16)
    logger.info("exported %s (step %s) to %s", latest.name, step, out)


# Crops (name, top, left, side) of held-out photos at their reference size for the README figure.
FIGURE_CROPS = (("photo_05", 260, 420, 420), ("photo_20", 140, 330, 420), ("photo_35", 200, 560, 420))


def figure(out: Path, cell: int = 300) -> None:
    """The README figure: three held-out photos (photo | hayao-builtin | the original AnimeGAN's output), then
    the portrait (photo | hayao-builtin with the portrait path | hayao-builtin-fast)."""
    import numpy as np
    from PIL import Image

    from animegan.inference import Stylizer
    from animegan.weights import load_generator

    photos, targets = split_folders("val")
    teacher = Stylizer(load_generator(TEACHER_FILE).model)
    student = Stylizer(load_generator(STUDENT_FILE).model)

    def square(image: Image.Image, top: int, left: int, side: int) -> np.ndarray:
        return np.asarray(
            image.crop((left, top, left + side, top + side)).resize((cell, cell), Image.LANCZOS)
        )

    rows = []
    for name, top, left, side in FIGURE_CROPS:
        photo = Image.open(photos / f"{name}.jpg").convert("RGB")
        target = Image.open(targets / f"{name}.jpg").convert("RGB")
        photo = photo.resize(target.size, Image.BILINEAR)  # the reference size, as the original ran it
        rows.append([square(im, top, left, side) for im in (photo, teacher.stylize(photo), target)])
    portrait = Image.open(PORTRAIT).convert("RGB")
    rows.append(
        [
            square(im, 0, 0, portrait.width)
            for im in (portrait, teacher.stylize(portrait), student.stylize(portrait))
        ]
    )
    grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out, quality=88)
    logger.info(
        "wrote %s: rows of photo | hayao-builtin | original (3 held-out photos), then the portrait", out
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=[
            "train",
            "polish",
            "validate",
            "export",
            "distill",
            "export-student",
            "figure",
            "save-resume",
        ],
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of this run")
    parser.add_argument(
        "--steps",
        type=int,
        help="the whole run's step count (the LR schedule ends there); default 8000 (train) / 3000 (distill)",
    )
    parser.add_argument("--model", type=Path, help="validate: this file (default: the built-in export)")
    parser.add_argument(
        "--step", type=int, help="export/export-student: that checkpoint of the run (default: the latest)"
    )
    parser.add_argument(
        "--run",
        choices=["polish", "gan"],
        default="polish",
        help="export: the polish (default) or the long run",
    )
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
        config = teacher_config(args.steps or 8000)
        run_training(config, TEACHER_RUN, TEACHER_RESUME, args.minutes, photos, targets)
    elif args.command == "polish":
        photos, targets = split_folders("train")
        run_training(polish_config(), POLISH_RUN, None, args.minutes, photos, targets)
    elif args.command == "distill":
        if not TEACHER_FILE.is_file():
            raise SystemExit(f"{TEACHER_FILE} is missing: export the teacher first")
        photos, _ = split_folders("train")
        config = student_config(args.steps or 3000)
        run_training(config, STUDENT_RUN, STUDENT_RESUME, args.minutes, photos, None)
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
        run_dir = POLISH_RUN if args.run == "polish" else TEACHER_RUN
        export(run_dir, TEACHER_FILE, "hayao-builtin", description, args.step)
    else:
        description = f"fast width-16 student distilled from hayao-builtin, {LICENSE_NOTE}"
        export(STUDENT_RUN, STUDENT_FILE, "hayao-builtin-fast", description, args.step)
    logger.info("%s took %.1f min", args.command, (time.monotonic() - started) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
