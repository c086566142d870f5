"""Trainer: AnimeGAN training as resumable, bounded segments (content-only init phase, then D step + G step).

Everything a run needs to continue lives in run_dir: config.json, checkpoints/, samples/, losses.jsonl.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from animegan.atomic import atomic_write
from animegan.data.dataset import ImageSource
from animegan.errors import ConfigError, WeightsError
from animegan.hardware import resolve_training_precision
from animegan.nn import VGG19Features, build_discriminator, build_generator
from animegan.training import checkpoint as ckpt
from animegan.training.config import RUNTIME_FIELDS, TrainConfig
from animegan.training.modes import MODES
from animegan.weights import read_weights, save_generator

logger = logging.getLogger(__name__)

LOSSES_FILE = "losses.jsonl"
CONFIG_FILE = "config.json"
SAMPLES_DIR = "samples"


@dataclass
class TrainProgress:
    """Reported after every step. epoch: 0-based epoch of the next step (step // iterations per epoch)."""

    step: int  # steps completed so far in the whole run
    total_steps: int
    epoch: int
    phase: str  # "init" | "gan" (unpaired) | "main" (paired, distill): phase of the step just run
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    status: str  # "completed" | "stopped" (should_stop) | "paused" (max_steps / max_seconds reached)
    step: int
    total_steps: int
    epoch: int
    phase: str
    checkpoint: Path | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"TrainConfig.device={name!r} but CUDA is not available; use device='auto' or 'cpu'"
        )
    return device


class Trainer:
    """One run directory. Construct, then call run() as often as needed; each call resumes where the last ended."""

    def __init__(
        self,
        config: TrainConfig,
        photos: ImageSource,
        styles: ImageSource | None,
        run_dir: str | os.PathLike[str],
        progress: Callable[[TrainProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_checkpoint: Callable[[Path], None] | None = None,
        on_sample: Callable[[Path], None] | None = None,
        smoothed: ImageSource | None = None,
        val_photos: ImageSource | None = None,
        targets: ImageSource | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.progress, self.should_stop = progress, should_stop
        self.on_checkpoint, self.on_sample = on_checkpoint, on_sample
        resume_from, state = _load_latest(self.run_dir)
        init_state = None
        if state is not None:
            config = self._reconcile(config, TrainConfig.from_dict(state["config"]), resume_from)
        elif config.init_generator:
            init_state, file_gen_config, _ = read_weights(config.init_generator)
            if file_gen_config != config.generator:
                logger.info(
                    "fine-tuning: generator architecture taken from %s: %s",
                    config.init_generator,
                    file_gen_config,
                )
                config = config.replace(generator=file_gen_config)
        self.device = resolve_device(config.device)
        # "auto" resolved here and recorded so (config.json, checkpoints): the run says what it computed in
        config = config.replace(precision=resolve_training_precision(config.precision, self.device))
        self.config = config
        # NHWC: bf16 steps 2x faster on a 2-thread AMX CPU at 256 px (bench/RESULTS-train.md)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.mode = MODES[config.mode](config, self.device, self.memory_format)
        _check_vgg(config)
        self.mode.check_inputs(styles, targets)
        self.data = self.mode.build_data(
            photos, styles, targets, smoothed, config.smooth_cache_dir or self.run_dir / "smooth_cache"
        )
        self.iterations_per_epoch = self.data.iterations_per_epoch
        total = config.epochs * self.iterations_per_epoch
        self.total_steps = min(total, config.max_total_steps) if config.max_total_steps else total
        self.init_steps = 0 if config.skip_init else config.init_epochs * self.iterations_per_epoch
        self._build_networks(init_state)
        self.step = 0
        # (N, 3, S, S): the photos of every sample grid and, paired and distill, their targets (a third row)
        self.samples, self.sample_targets = self.mode.sample_inputs(val_photos)
        if state is not None:
            self._resume(state, resume_from)
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / CONFIG_FILE)  # before step one: the run describes itself
            logger.info(
                "new run %s: %d steps (%d init), %d per epoch, device %s, %s",
                self.run_dir,
                self.total_steps,
                self.init_steps,
                self.iterations_per_epoch,
                self.device,
                config.precision,
            )

    def _build_networks(self, init_state: dict[str, torch.Tensor] | None) -> None:
        """G, D, the optional VGG19, the mode's loss and the three optimisers (warm-up, G, D)."""
        config = self.config
        torch.manual_seed(config.seed)  # weight init of G and D
        self.generator = build_generator(config.generator).to(self.device)
        self.discriminator = build_discriminator(config.discriminator).to(self.device)
        self.vgg = VGG19Features(config.vgg_weights).to(self.device) if config.needs_vgg else None
        self.criterion = self.mode.build_criterion(self.vgg)
        if init_state is not None:
            self.generator.load_state_dict(init_state, strict=True)
        for module in (self.generator, self.discriminator, self.vgg):
            if module is not None:
                module.to(memory_format=self.memory_format)
        betas = config.betas
        self.opt_init = torch.optim.Adam(self.generator.parameters(), lr=config.init_lr, betas=betas)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.g_lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.d_lr, betas=betas)

    def _resume(self, state: dict[str, Any], path: Path | None) -> None:
        self._load_state(state)
        self._truncate_loss_log()
        if not (self.run_dir / CONFIG_FILE).is_file():  # a checkpoint fetched into a fresh folder
            self.config.save(self.run_dir / CONFIG_FILE)
        logger.info("resuming %s from %s (step %d of %d)", self.run_dir, path, self.step, self.total_steps)

    @staticmethod
    def _reconcile(given: TrainConfig, saved: TrainConfig, path: Path) -> TrainConfig:
        """The checkpoint's config with the given runtime fields; refuse changes to what the run computes."""
        ignore = RUNTIME_FIELDS | ({"generator"} if given.init_generator else set())
        diffs = saved.differences(given, ignore=frozenset(ignore))
        if diffs:
            raise ConfigError(
                f"the config differs from the one of checkpoint {path} in: {'; '.join(diffs)}. "
                "Resume with the run's own config.json or start a new run directory."
            )
        return saved.replace(**{name: getattr(given, name) for name in RUNTIME_FIELDS})

    def phase_of(self, step: int) -> str:
        return "init" if step < self.init_steps else self.mode.main_phase

    @property
    def epoch(self) -> int:
        return self.step // self.iterations_per_epoch

    # ---- one step ----------------------------------------------------------------------------------

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def train_step(self) -> dict[str, float]:
        """One optimisation step of the current phase; returns the named losses as floats."""
        batch = self.data.next_batch().to(self.device, self.memory_format)
        self.generator.train()
        if self.phase_of(self.step) == "init":
            return _floats(self.mode.init_step(self, batch))
        if self.opt_init.state:
            # The warm-up's Adam moments are never used again: dropping them takes 2x G's size off every checkpoint.
            self.opt_init.state.clear()
        factor = self.config.lr_factor(self.step, self.init_steps, self.total_steps)
        for optimizer, base in ((self.opt_g, self.config.g_lr), (self.opt_d, self.config.d_lr)):
            for group in optimizer.param_groups:
                group["lr"] = base * factor
        return _floats(self.mode.main_step(self, batch))

    # ---- the loop ----------------------------------------------------------------------------------

    def run(self, max_steps: int | None = None, max_seconds: float | None = None) -> TrainResult:
        """Train until done, stopped, or this segment's budget is spent; always ends with a checkpoint."""
        if self.step >= self.total_steps:
            return self._result("completed", ckpt.latest_checkpoint(self.run_dir))
        start, done, status = time.monotonic(), 0, "completed"
        last_saved = None
        while self.step < self.total_steps:
            if self.should_stop is not None and self.should_stop():
                status = "stopped"
                break
            if (max_steps is not None and done >= max_steps) or (
                max_seconds is not None and time.monotonic() - start >= max_seconds
            ):
                status = "paused"
                break
            phase = self.phase_of(self.step)
            losses = self.train_step()
            self.step += 1
            done += 1
            last_saved = None
            self._log_losses(phase, losses)
            if self.progress is not None:
                self.progress(TrainProgress(self.step, self.total_steps, self.epoch, phase, losses))
            if self.config.sample_every and self.step % self.config.sample_every == 0:
                self.write_sample()
            if self.step % self.config.checkpoint_every == 0:
                last_saved = self.save_checkpoint()
        if status == "completed" and not (
            self.config.sample_every and self.step % self.config.sample_every == 0
        ):
            self.write_sample()
        path = last_saved or self.save_checkpoint()
        logger.info(
            "%s at step %d of %d (%d steps in %.1f s)",
            status,
            self.step,
            self.total_steps,
            done,
            time.monotonic() - start,
        )
        return self._result(status, path)

    def _result(self, status: str, path: Path | None) -> TrainResult:
        phase = self.phase_of(max(self.step - 1, 0))
        return TrainResult(status, self.step, self.total_steps, self.epoch, phase, path)

    def _log_losses(self, phase: str, losses: dict[str, float]) -> None:
        record = {
            "step": self.step,
            "epoch": self.epoch,
            "phase": phase,
            "time": round(time.time(), 3),
            **losses,
        }
        with open(self.run_dir / LOSSES_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.step % self.config.log_every == 0 or self.step == self.total_steps:
            named = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
            logger.info("step %d/%d epoch %d %s: %s", self.step, self.total_steps, self.epoch, phase, named)

    def _truncate_loss_log(self) -> None:
        """Drop log lines of steps after the checkpoint: a segment that died re-runs those steps."""
        path = self.run_dir / LOSSES_FILE
        if not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= self.step]
        if len(kept) != len(lines):
            with atomic_write(path) as f:
                f.write("".join(kept).encode())

    # ---- checkpoints, samples, export -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "phase": self.phase_of(self.step),
            "config": self.config.to_dict(),
            "generator_config": self.config.generator.to_dict(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizers": {
                "init": self.opt_init.state_dict(),
                "g": self.opt_g.state_dict(),
                "d": self.opt_d.state_dict(),
            },
            "data": self.data.state_dict(),
            "rng": ckpt.capture_rng_state(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_init.load_state_dict(state["optimizers"]["init"])
        self.opt_g.load_state_dict(state["optimizers"]["g"])
        self.opt_d.load_state_dict(state["optimizers"]["d"])
        self.data.load_state_dict(state["data"])
        ckpt.restore_rng_state(state["rng"])
        self.step = int(state["step"])

    def save_checkpoint(self) -> Path:
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.run_dir, self.step), self.state_dict())
        ckpt.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        logger.info("checkpoint %s", path)
        if self.on_checkpoint is not None:
            self.on_checkpoint(path)
        return path

    @torch.no_grad()
    def write_sample(self) -> Path | None:
        """run_dir/samples/step-XXXXXX.png: the val photos (top row) over their G outputs, then (paired and
        distill) the targets in a third row."""
        if len(self.samples) == 0:
            return None
        self.generator.eval()
        with self.autocast():
            out = self.generator(self.samples).float().clamp(-1, 1)
        self.generator.train()
        shown = [self.samples, out]
        if self.sample_targets is not None:
            shown.append(self.sample_targets)
        rows = [torch.cat(list(t.float()), dim=2) for t in shown]  # each (3, S, n*S)
        grid = ((torch.cat(rows, dim=1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        path = self.run_dir / SAMPLES_DIR / f"step-{self.step:06d}.png"
        with atomic_write(path) as f:
            Image.fromarray(np.ascontiguousarray(grid)).save(f, format="PNG")
        if self.on_sample is not None:
            self.on_sample(path)
        return path

    def export_generator(self, path: str | os.PathLike[str]) -> Path:
        """The serving export (safetensors + config) of the current generator."""
        metadata = {
            "source": "trained",
            "mode": self.config.mode,
            "step": self.step,
            "preset": self.config.preset,
            "run_dir": str(self.run_dir),
        }
        return save_generator(Path(path), self.generator, metadata=metadata)


def _check_vgg(config: TrainConfig) -> None:
    if config.needs_vgg and not config.vgg_weights:
        why = "the unpaired mode" if config.mode == "unpaired" else "the perceptual loss term"
        raise ConfigError(
            f"TrainConfig.vgg_weights is empty; {why} needs a local VGG19 weights file (vgg19.npy or "
            "torchvision's vgg19 .pth); the paired and distill modes train without one"
        )


def _load_latest(run_dir: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest readable checkpoint; an unreadable newer one (e.g. a cut-off copy) is skipped with a warning."""
    found = ckpt.list_checkpoints(run_dir)
    first_error: WeightsError | None = None
    for path in reversed(found):
        try:
            return path, ckpt.load_checkpoint(path)
        except WeightsError as exc:
            logger.warning("skipping unreadable checkpoint %s: %s", path, exc)
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return None, None


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    # one device-to-host copy for all terms instead of a CUDA sync per term
    values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
    return dict(zip(terms, values, strict=True))
