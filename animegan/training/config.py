"""TrainConfig: every setting of a training run, with the reference presets (v1, v2 per style).

Saved whole into config.json and every checkpoint, so a run resumes without depending on today's defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from animegan.atomic import atomic_write
from animegan.config import (
    LOSS_PRESETS,
    DiscriminatorConfig,
    GeneratorConfig,
    LossWeights,
    PairedLossWeights,
)
from animegan.errors import ConfigError
from animegan.training.augment import parse_policy

PRECISIONS = ("fp32", "bf16", "auto")
# constant: the optimiser's lr throughout; cosine / linear: after lr_warmup_steps, decay to lr * lr_final_ratio
# at the run's last step. Warm-up and decay span the main phase (after the init phase).
LR_SCHEDULES = ("constant", "cosine", "linear")
# unpaired: the AnimeGAN recipe (photos + style images, VGG19 needed); paired: (photo, target) pairs;
# distill: targets made on the fly by a teacher generator from photos alone.
MODES = ("unpaired", "paired", "distill")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")

# Fields that may change between segments of one run without changing what it computes (or that are
# machine-specific, like the VGG path); any other difference between a checkpoint and the config is refused.
RUNTIME_FIELDS = frozenset(
    {
        "device",
        "channels_last",
        "precision",
        "checkpoint_every",
        "keep_checkpoints",
        "sample_every",
        "num_samples",
        "log_every",
        "epochs",
        "max_total_steps",
        "smooth_cache_dir",
        "vgg_weights",
        "init_generator",
        "teacher",
    }
)

# Schedules of the reference code: v1 = AG1 train.py HEAD (spec 1.7), v2 = AG2 train.py @15268d5 (spec 2.4).
_V1_SCHEDULE = {
    "epochs": 101,
    "init_epochs": 5,
    "batch_size": 6,
    "init_lr": 1e-4,
    "g_lr": 8e-5,
    "d_lr": 16e-5,
}
_V2_SCHEDULE = {
    "epochs": 101,
    "init_epochs": 10,
    "batch_size": 12,
    "init_lr": 2e-4,
    "g_lr": 2e-5,
    "d_lr": 4e-5,
}
# Paired and distillation schedules, chosen by measurement (bench/RESULTS-paired.md): Adam at 2e-4 as pix2pix,
# a short reconstruction warm-up so G starts at the photo rather than at noise.
_PAIRED_SCHEDULE = {
    "image_size": 256,
    "batch_size": 4,
    "epochs": 2000,
    "init_epochs": 5,
    "init_lr": 2e-4,
    "g_lr": 2e-4,
    "d_lr": 2e-4,
}
PRESETS: dict[str, dict[str, Any]] = {
    "v1": {
        "generator": GeneratorConfig(arch="v1"),
        "discriminator": DiscriminatorConfig(arch="v1"),
        "losses": LOSS_PRESETS["v1"],
        **_V1_SCHEDULE,
    },
    **{
        name: {
            "generator": GeneratorConfig(arch="v2"),
            "discriminator": DiscriminatorConfig(arch="v2"),
            "losses": LOSS_PRESETS[name],
            **_V2_SCHEDULE,
        }
        for name in ("v2-hayao", "v2-paprika", "v2-shinkai")
    },
    "paired": {
        "mode": "paired",
        "generator": GeneratorConfig(arch="v2"),
        "discriminator": DiscriminatorConfig(arch="v2"),
        **_PAIRED_SCHEDULE,
    },
    # A student of a quarter of v2's width (about 1/4 of the MACs) learning a teacher's outputs; no warm-up.
    "distill": {
        "mode": "distill",
        "generator": GeneratorConfig(arch="v2", base_channels=16),
        "discriminator": DiscriminatorConfig(arch="v2"),
        **_PAIRED_SCHEDULE,
        "init_epochs": 0,
    },
}
_NESTED = {
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "losses": LossWeights,
    "paired_losses": PairedLossWeights,
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the v2-hayao preset; use TrainConfig.from_preset for the others."""

    preset: str = "v2-hayao"  # preset the defaults came from (recorded for humans; fields below rule)
    mode: str = "unpaired"  # "unpaired" (AnimeGAN), "paired" (photo, target) or "distill" (teacher's targets)
    generator: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(arch="v2"))
    discriminator: DiscriminatorConfig = field(default_factory=lambda: DiscriminatorConfig(arch="v2"))
    losses: LossWeights = field(default_factory=lambda: LOSS_PRESETS["v2-hayao"])  # unpaired mode's terms
    paired_losses: PairedLossWeights = field(default_factory=PairedLossWeights)  # paired and distill terms
    teacher: str | None = None  # distill: the teacher generator file (any file load_generator accepts)
    max_side: int | None = (
        None  # paired/distill: scale images down so the longer side fits (memory); None: as is
    )
    vgg_weights: str = (
        ""  # local VGG19 weights file (vgg19.npy or converted): unpaired mode and perceptual terms
    )
    image_size: int = 256  # square training crops (reference: 256)
    batch_size: int = 12  # images per step for each of photo, anime and smooth streams
    epochs: int = 101  # total epochs, init epochs included (reference `epoch`)
    init_epochs: int = 10  # content-only G pretraining epochs (reference `init_epoch`)
    init_lr: float = 2e-4  # Adam lr of the init phase
    g_lr: float = 2e-5  # Adam lr of G in the GAN phase
    d_lr: float = 4e-5  # Adam lr of D
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas of all three optimisers (reference)
    lr_schedule: str = "constant"  # g_lr and d_lr over the main phase: constant | cosine | linear (decay)
    lr_warmup_steps: int = 0  # main-phase steps of linear warm-up from 0 to g_lr / d_lr
    lr_final_ratio: float = 0.0  # cosine / linear: the lr at the last step, as a fraction of g_lr / d_lr
    d_augment: str = (
        ""  # paired: DiffAugment policy of every D input, e.g. "color,translation,cutout"; "" none
    )
    max_total_steps: int | None = (
        None  # stop the whole run at this global step (short runs); None: all epochs
    )
    seed: int = 0  # seeds weights init, data order and every RNG; same seed + same device = same run on CPU
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:N"
    precision: str = "auto"  # "fp32" | "bf16" (autocast; losses in fp32) | "auto": bf16 on CUDA and on CPUs
    # with native bf16 (AMX, AVX512-BF16), fp32 elsewhere; the Trainer records what it resolved to
    channels_last: bool = True  # NHWC tensors: faster oneDNN (CPU) and tensor-core (CUDA) convolutions
    checkpoint_every: int = 1000  # steps between checkpoints (each run() segment also ends with one)
    keep_checkpoints: int = 3  # newest checkpoints kept in run_dir/checkpoints (older ones deleted)
    sample_every: int = 1000  # steps between sample grids in run_dir/samples; 0 disables interval samples
    num_samples: int = 4  # photos in each sample grid (Trainer(val_photos=...) or the first training photos)
    log_every: int = 10  # steps between log lines (losses.jsonl gets every step)
    init_generator: str | None = None  # fine-tuning: start G from this export/checkpoint/state-dict file
    skip_init: bool = False  # skip the content-only phase (fine-tuning from a trained G)
    smooth_cache_dir: str | None = (
        None  # cache of decoded and edge-smoothed images; None: run_dir/smooth_cache
    )

    def __post_init__(self) -> None:
        for name, cls in _NESTED.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise ConfigError(f"TrainConfig.{name} must be a {cls.__name__} or a dict, got {value!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        self._validate()

    def _validate(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"TrainConfig.{name}={value!r} must be an int >= {minimum}")

        for name in ("batch_size", "epochs", "checkpoint_every", "keep_checkpoints", "log_every"):
            positive_int(name)
        for name in ("init_epochs", "sample_every", "num_samples"):
            positive_int(name, minimum=0)
        if self.max_total_steps is not None:
            positive_int("max_total_steps")
        positive_int("image_size", minimum=16)
        if self.image_size % 4:
            raise ConfigError(f"TrainConfig.image_size={self.image_size} must be a multiple of 4")
        if self.init_epochs > self.epochs:
            raise ConfigError(f"TrainConfig.init_epochs={self.init_epochs} exceeds epochs={self.epochs}")
        for name in ("init_lr", "g_lr", "d_lr"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < 1:
                raise ConfigError(f"TrainConfig.{name}={value!r} must be a learning rate in (0, 1)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas={self.betas!r} must be two numbers in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"TrainConfig.precision={self.precision!r} is not one of {PRECISIONS}")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"TrainConfig.device={self.device!r}; use auto, cpu, cuda or cuda:N")
        if self.mode not in MODES:
            raise ConfigError(f"TrainConfig.mode={self.mode!r} is not one of {MODES}")
        if self.max_side is not None:
            positive_int("max_side", minimum=self.image_size)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"TrainConfig.lr_schedule={self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        positive_int("lr_warmup_steps", minimum=0)
        if not isinstance(self.lr_final_ratio, int | float) or not 0 <= self.lr_final_ratio <= 1:
            raise ConfigError(f"TrainConfig.lr_final_ratio={self.lr_final_ratio!r} must be in [0, 1]")
        if self.mode == "distill" and self.paired_losses.d_smooth > 0:
            raise ConfigError(
                "paired_losses.d_smooth needs fixed targets to smooth; the distill mode makes its targets on the fly"
            )
        try:
            parse_policy(self.d_augment)
        except ValueError as exc:
            raise ConfigError(f"TrainConfig.d_augment={self.d_augment!r}: {exc}") from None
        if self.preset not in PRESETS:
            raise ConfigError(f"TrainConfig.preset={self.preset!r} is not one of {sorted(PRESETS)}")

    def lr_factor(self, step: int, main_start: int, total_steps: int) -> float:
        """The multiplier of g_lr and d_lr at global step `step` (0-based) under lr_schedule."""
        k = step - main_start  # steps into the main phase
        if self.lr_warmup_steps and k < self.lr_warmup_steps:
            return (k + 1) / self.lr_warmup_steps
        if self.lr_schedule == "constant":
            return 1.0
        span = max(total_steps - main_start - self.lr_warmup_steps - 1, 1)
        progress = min(max((k - self.lr_warmup_steps) / span, 0.0), 1.0)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if self.lr_schedule == "cosine" else 1 - progress
        return self.lr_final_ratio + (1 - self.lr_final_ratio) * decay

    @property
    def needs_vgg(self) -> bool:
        """The unpaired recipe's content/style losses and the paired perceptual term read VGG19 features."""
        return self.mode == "unpaired" or self.paired_losses.perceptual > 0

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The preset's config with overrides; a dict for generator/discriminator/losses patches those fields."""
        if name not in PRESETS:
            raise ConfigError(f"unknown training preset {name!r}; known presets: {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; known fields are {sorted(known)}")
        values: dict[str, Any] = {"preset": name, **PRESETS[name]}
        for key, value in overrides.items():
            if key in _NESTED and isinstance(value, dict):
                base = values[key].to_dict() if key in values else {}  # else the field's own defaults
                value = _NESTED[key].from_dict({**base, **value})
            values[key] = value
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (nested configs as dicts, betas as a list): safe for weights_only loads."""
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"TrainConfig.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        with atomic_write(path) as f:
            f.write((json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read training config {path}: {exc}") from exc
        return cls.from_dict(data)

    def differences(self, other: TrainConfig, ignore: frozenset[str] = RUNTIME_FIELDS) -> list[str]:
        """Fields (dotted for nested ones) whose values differ, outside `ignore`: 'name: mine != theirs'."""
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for key in sorted(set(mine) - ignore):
            if isinstance(mine[key], dict):
                out += [
                    f"{key}.{k}: {v!r} != {theirs[key].get(k)!r}"
                    for k, v in sorted(mine[key].items())
                    if theirs[key].get(k) != v
                ]
            elif mine[key] != theirs[key]:
                out.append(f"{key}: {mine[key]!r} != {theirs[key]!r}")
        return out
