"""`animegan train`: train a style from a JSON config and/or flags; rerunning the same command resumes the run."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animegan.errors import ConfigError

if TYPE_CHECKING:  # the torch-heavy modules load only when a command runs, keeping `animegan --help` fast
    from animegan.training import TrainConfig

# CLI-only keys a JSON config file may hold besides the TrainConfig fields.
PATH_KEYS = ("photos", "styles", "targets", "smoothed", "val_photos", "run_dir")
# flag dest -> TrainConfig field (None values are "not given")
FLAG_FIELDS = {
    "vgg_weights": "vgg_weights",
    "steps": "max_total_steps",
    "epochs": "epochs",
    "init_epochs": "init_epochs",
    "batch_size": "batch_size",
    "image_size": "image_size",
    "seed": "seed",
    "device": "device",
    "precision": "precision",
    "checkpoint_every": "checkpoint_every",
    "sample_every": "sample_every",
    "init_generator": "init_generator",
    "init_lr": "init_lr",
    "g_lr": "g_lr",
    "d_lr": "d_lr",
    "teacher": "teacher",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an AnimeGAN style (resumable)",
        description="Train an AnimeGAN generator: unpaired (photos + style images, the AnimeGAN recipe; needs "
        "VGG19 weights), paired (--paired: photos + targets of the same names) or distilled from a teacher "
        "(--teacher MODEL: photos only). Rerun the same command to resume from the run directory's latest "
        "checkpoint.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="JSON file: TrainConfig fields (+ photos, styles, smoothed, val_photos, run_dir)",
    )
    p.add_argument(
        "--preset",
        help="v1, v2-hayao (default), v2-paprika, v2-shinkai; paired (--paired), distill (--teacher)",
    )
    p.add_argument("--photos", help="folder of real photos")
    p.add_argument("--styles", help="folder of style (anime) images (unpaired mode)")
    p.add_argument(
        "--paired",
        action="store_true",
        help="paired mode: learn photo -> target from --targets (no VGG19 file needed)",
    )
    p.add_argument(
        "--targets",
        help="folder of target images named as the photos (the photo's size or its reference size)",
    )
    p.add_argument(
        "--teacher",
        help="distill mode: learn the outputs of this generator file (any format `animegan info` reads)",
    )
    p.add_argument("--smoothed", help="folder of pre-smoothed style images (default: computed and cached)")
    p.add_argument(
        "--val-photos", help="folder of photos for the sample grids (default: first training photos)"
    )
    p.add_argument("--run-dir", help="run folder: config.json, checkpoints/, samples/, losses.jsonl")
    p.add_argument("--vgg-weights", help="local VGG19 weights (vgg19.npy or torchvision .pth)")
    p.add_argument("--steps", type=int, help="stop the whole run at this step (default: all epochs)")
    p.add_argument("--epochs", type=int, help="total epochs, init epochs included")
    p.add_argument("--init-epochs", type=int, help="content-only pretraining epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--base-channels", type=int, help="generator width (default: the architecture's)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="default auto: bf16 where native")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--sample-every", type=int, help="steps between sample grids (0: only at the end)")
    p.add_argument("--init-lr", type=float)
    p.add_argument("--g-lr", type=float)
    p.add_argument("--d-lr", type=float)
    p.add_argument("--init-generator", help="fine-tune: start G from this weights file")
    p.add_argument("--skip-init", action="store_true", help="skip the content-only phase (fine-tuning)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any TrainConfig field, dotted for nested ones (losses.color=20); VALUE is JSON or text",
    )
    p.add_argument("--max-seconds", type=float, help="pause (with a checkpoint) after this many seconds")
    p.add_argument(
        "--export",
        type=Path,
        help="export path of the finished generator (default: RUN_DIR/generator.safetensors)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate inputs, print the resolved config, exit")
    p.set_defaults(func=run)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, str | None]]:
    """(TrainConfig, paths) from the config file, the run's own config.json, the preset and the flags."""
    from animegan.training import TrainConfig

    base: dict[str, Any] = {}
    if args.config is not None:
        try:
            base = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read --config {args.config}: {exc}") from exc
        if not isinstance(base, dict):
            raise ConfigError(f"--config {args.config} must hold a JSON object of TrainConfig fields")
    paths = {key: base.pop(key, None) for key in PATH_KEYS}
    for key in PATH_KEYS:
        if getattr(args, key) is not None:
            paths[key] = getattr(args, key)
    if paths["run_dir"] is None:
        raise ConfigError("give --run-dir (or run_dir in --config): the folder that holds the run")
    own = Path(paths["run_dir"]) / "config.json"
    if args.config is None and args.preset is None and own.is_file():
        base = TrainConfig.load(own).to_dict()  # rerun of an existing run: its own config is the base
    if args.paired and args.teacher:
        raise ConfigError("give --paired (photos + targets) or --teacher (photos only), not both")
    mode_preset = "paired" if args.paired else "distill" if args.teacher else None
    preset = args.preset or mode_preset or base.pop("preset", None) or "v2-hayao"
    base.pop("preset", None)
    if mode_preset is not None:
        base["mode"] = mode_preset
    for dest, name in FLAG_FIELDS.items():
        if getattr(args, dest) is not None:
            base[name] = getattr(args, dest)
    if args.skip_init:
        base["skip_init"] = True
    if args.base_channels is not None:
        base["generator"] = {**base.get("generator", {}), "base_channels": args.base_channels}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} must look like FIELD=VALUE")
        head, _, sub = field.partition(".")
        if sub:
            base[head] = {**base.get(head, {}), sub: _parse_value(value)}
        else:
            base[head] = _parse_value(value)
    config = TrainConfig.from_preset(preset, **base)
    needed = {"unpaired": ("photos", "styles"), "paired": ("photos", "targets"), "distill": ("photos",)}
    for key in needed[config.mode]:
        if paths[key] is None:
            raise ConfigError(f"give --{key} (or {key} in --config) for the {config.mode} mode")
    return config, paths


def dry_run(config: TrainConfig, paths: dict[str, str | None]) -> int:
    """Read every input the run would read (images, VGG19, teacher) and print the plan; train nothing."""
    from animegan.data import load_image_set
    from animegan.data.paired import load_pairs, load_photos
    from animegan.nn import VGG19Features
    from animegan.weights import load_generator

    if config.mode == "unpaired":
        photos = load_image_set(paths["photos"], "photo", config.image_size)
        styles = load_image_set(paths["styles"], "style", config.image_size)
        for key, role in (("smoothed", "smoothed style"), ("val_photos", "val photo")):
            if paths[key] is not None:
                load_image_set(paths[key], role, config.image_size)
        count, what = max(len(photos), len(styles)), f"{len(photos)} photos, {len(styles)} style images"
    elif config.mode == "paired":
        pairs = load_pairs(paths["photos"], paths["targets"], max_side=config.max_side)
        count, what = len(pairs), f"{len(pairs)} photo/target pairs"
    else:
        photos = load_photos(paths["photos"], max_side=config.max_side)
        teacher = load_generator(config.teacher)
        count = len(photos)
        what = f"{count} photos, teacher {config.teacher} ({teacher.config.arch}, width {teacher.config.base_channels})"
    if config.needs_vgg:
        if not config.vgg_weights:
            raise ConfigError("give --vgg-weights: the path of a local VGG19 weights file")
        VGG19Features(config.vgg_weights)
    per_epoch = max(count // config.batch_size, 1)
    total = config.epochs * per_epoch
    if config.max_total_steps:
        total = min(total, config.max_total_steps)
    print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    print(
        f"inputs ok ({config.mode}): {what}; {per_epoch} steps per epoch, "
        f"{total} steps in all; run dir {paths['run_dir']}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    config, paths = resolve(args)
    if args.dry_run:
        return dry_run(config, paths)
    from animegan.training import Trainer, TrainProgress

    stop_requested = []

    def on_sigint(signum: int, frame: Any) -> None:
        if stop_requested:
            raise KeyboardInterrupt
        stop_requested.append(signum)
        print(
            "animegan: stopping after this step (Ctrl-C again to abort without a checkpoint)", file=sys.stderr
        )

    def report(p: TrainProgress) -> None:
        if p.step % config.log_every == 0 or p.step == p.total_steps:
            named = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
            print(f"step {p.step}/{p.total_steps} epoch {p.epoch} {p.phase}: {named}", flush=True)

    trainer = Trainer(
        config,
        paths["photos"],
        paths["styles"],
        paths["run_dir"],
        progress=report,
        should_stop=lambda: bool(stop_requested),
        smoothed=paths["smoothed"],
        val_photos=paths["val_photos"],
        targets=paths["targets"],
    )
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = trainer.run(max_seconds=args.max_seconds)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"{result.status} at step {result.step}/{result.total_steps}; checkpoint {result.checkpoint}")
    if result.status == "completed":
        export = trainer.export_generator(args.export or Path(paths["run_dir"]) / "generator.safetensors")
        print(f"exported generator to {export}")
    return 0
