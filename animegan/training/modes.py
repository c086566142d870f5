"""The training modes as strategies of the Trainer: what data a mode reads, its loss, and one step of each phase.

The Trainer owns what every mode shares (networks, optimisers, the loop, checkpoints, samples); a mode owns
what differs: UnpairedMode (the AnimeGAN recipe: photos + style images), PairedMode ((photo, target) pairs)
and DistillMode (the targets come from a teacher generator).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from torch import nn

from animegan.data import UnpairedDataset, load_image_set
from animegan.data.dataset import ImageSource, to_tensor_color
from animegan.data.paired import CropDataset, PairBatch, load_pairs, load_photos
from animegan.errors import ConfigError
from animegan.losses import AnimeGANLoss, PairedLoss
from animegan.training.augment import diff_augment, parse_policy
from animegan.training.config import TrainConfig
from animegan.weights import load_generator

if TYPE_CHECKING:
    from animegan.training.trainer import Trainer


class TrainingMode:
    """The interface; `main_phase` names the phase after the init (warm-up) phase in logs and checkpoints."""

    main_phase = "main"

    def __init__(self, config: TrainConfig, device: torch.device, memory_format: torch.memory_format) -> None:
        self.config, self.device, self.memory_format = config, device, memory_format

    def check_inputs(self, styles: ImageSource | None, targets: ImageSource | None) -> None:
        """Name what the mode misses before any data is read."""

    def build_data(
        self,
        photos: ImageSource,
        styles: ImageSource | None,
        targets: ImageSource | None,
        smoothed: ImageSource | None,
        cache_dir: str | os.PathLike[str],
    ) -> UnpairedDataset | CropDataset:
        raise NotImplementedError

    def build_criterion(self, vgg: nn.Module | None) -> nn.Module:
        raise NotImplementedError

    def sample_inputs(self, val_photos: ImageSource | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fixed photos of every sample grid and, where the mode has them, their targets (third row)."""
        raise NotImplementedError

    def init_step(self, t: Trainer, batch) -> dict[str, torch.Tensor]:
        """The warm-up: both modes train G alone on one loss (the criterion's init_phase)."""
        with t.autocast():
            terms = t.criterion.init_phase(batch.photo, t.generator(batch.photo))
        t.opt_init.zero_grad(set_to_none=True)
        terms["total"].backward()
        t.opt_init.step()
        return _prefixed(terms, "init_")

    def main_step(self, t: Trainer, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class UnpairedMode(TrainingMode):
    """AnimeGAN: D on anime (real) against G(photo), grayscale anime and grayscale edge-smoothed anime (fakes);
    G on adversarial, VGG content, Gram style and colour terms."""

    main_phase = "gan"

    def check_inputs(self, styles: ImageSource | None, targets: ImageSource | None) -> None:
        if styles is None:
            raise ConfigError("the unpaired mode needs a folder (or list) of style images")

    def build_data(self, photos, styles, targets, smoothed, cache_dir) -> UnpairedDataset:
        c = self.config
        self.data = UnpairedDataset(
            photos,
            styles,
            image_size=c.image_size,
            batch_size=c.batch_size,
            seed=c.seed,
            smooth_cache_dir=cache_dir,
            smoothed=smoothed,
        )
        return self.data

    def build_criterion(self, vgg: nn.Module | None) -> nn.Module:
        return AnimeGANLoss(vgg, self.config.losses)

    def sample_inputs(self, val_photos: ImageSource | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        c, val = self.config, self.data.photos
        if val_photos is not None:
            val = load_image_set(val_photos, "val photo", c.image_size, cache_dir=self.data.cache_dir)
        return to_tensor_color(val.color[: c.num_samples]).to(self.device), None

    def main_step(self, t: Trainer, batch) -> dict[str, torch.Tensor]:
        # D step on G(p).detach(): one forward over the four inputs (per-sample norms keep them independent)
        t.discriminator.requires_grad_(True)
        with t.autocast():
            fake = t.generator(batch.photo)
            logits = t.discriminator(
                torch.cat([batch.anime, fake.detach(), batch.anime_gray, batch.smooth_gray])
            )
            d_terms = t.criterion.discriminator(*logits.chunk(4))
        t.opt_d.zero_grad(set_to_none=True)
        d_terms["total"].backward()
        t.opt_d.step()

        # G step on the same fake with D frozen: D's weights get no gradients, the fake still does
        t.discriminator.requires_grad_(False)
        with t.autocast():
            g_terms = t.criterion.generator(batch.photo, fake, batch.anime_gray, t.discriminator(fake))
        t.opt_g.zero_grad(set_to_none=True)
        g_terms["total"].backward()
        t.opt_g.step()
        return {**_prefixed(d_terms, "d_"), **_prefixed(g_terms, "g_")}


class PairedMode(TrainingMode):
    """G towards each photo's target (regression terms), plus, when the adversarial or feature-matching weight
    is set, a patch D that tells targets from G's outputs (and, with d_smooth, from edge-smoothed targets)."""

    def __init__(self, config: TrainConfig, device: torch.device, memory_format: torch.memory_format) -> None:
        super().__init__(config, device, memory_format)
        self.augment = parse_policy(config.d_augment)

    def check_inputs(self, styles: ImageSource | None, targets: ImageSource | None) -> None:
        if targets is None:
            raise ConfigError("the paired mode needs targets: a folder of images named as the photos")

    def build_data(self, photos, styles, targets, smoothed, cache_dir) -> CropDataset:
        c = self.config
        smooth = c.paired_losses.d_smooth > 0 and c.paired_losses.adv + c.paired_losses.feature_matching > 0
        self.data = CropDataset(
            load_pairs(photos, targets, max_side=c.max_side),
            c.image_size,
            c.batch_size,
            c.seed,
            smooth_targets=smooth,
        )
        return self.data

    def build_criterion(self, vgg: nn.Module | None) -> nn.Module:
        return PairedLoss(self.config.paired_losses, vgg)

    def sample_inputs(self, val_photos: ImageSource | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        fixed = self.data.center_crops(self.config.num_samples).to(self.device)
        return fixed.photo, fixed.target

    def targets(self, t: Trainer, batch: PairBatch) -> torch.Tensor:
        return batch.target

    def main_step(self, t: Trainer, batch: PairBatch) -> dict[str, torch.Tensor]:
        target = self.targets(t, batch)
        with t.autocast():
            fake = t.generator(batch.photo)
        losses: dict[str, torch.Tensor] = {}
        d_fake = d_features = None
        if t.criterion.uses_discriminator:
            losses.update(self._discriminator_step(t, target, fake.detach(), batch.smooth))
            d_fake, d_features = self._judge(t, target, fake)
        with t.autocast():
            g_terms = t.criterion.generator(target, fake, d_fake, d_features)
        t.opt_g.zero_grad(set_to_none=True)
        g_terms["total"].backward()
        t.opt_g.step()
        return {**losses, **_prefixed(g_terms, "g_")}

    def _discriminator_step(
        self, t: Trainer, target: torch.Tensor, fake: torch.Tensor, smooth: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """One D step on the targets (-> 1), G's outputs and the smoothed targets (-> 0), augmented alike."""
        t.discriminator.requires_grad_(True)
        inputs = diff_augment([target, fake] + ([] if smooth is None else [smooth]), self.augment)
        with t.autocast():
            logits = t.discriminator(torch.cat(inputs)).chunk(len(inputs))
            d_terms = t.criterion.discriminator(*logits)
        t.opt_d.zero_grad(set_to_none=True)
        d_terms["total"].backward()
        t.opt_d.step()
        t.discriminator.requires_grad_(False)
        return _prefixed(d_terms, "d_")

    def _judge(
        self, t: Trainer, target: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[list[torch.Tensor], list[torch.Tensor]] | None]:
        """D's (frozen) logits of G's outputs and, for feature matching, its features of both, one augmentation
        shared by each target and its output so their features compare place by place."""
        target, fake = diff_augment([target, fake], self.augment)
        with t.autocast():
            if t.criterion.weights.feature_matching == 0:
                return t.discriminator(fake), None
            logits, features = t.discriminator.forward_features(torch.cat([target, fake]))
        halves = [f.chunk(2) for f in features]
        return logits.chunk(2)[1], ([h[0] for h in halves], [h[1] for h in halves])


class DistillMode(PairedMode):
    """PairedMode whose targets are a teacher generator's outputs for the photos, made on the fly."""

    def check_inputs(self, styles: ImageSource | None, targets: ImageSource | None) -> None:
        if not self.config.teacher:
            raise ConfigError("the distill mode needs TrainConfig.teacher: a generator file to learn from")

    def build_data(self, photos, styles, targets, smoothed, cache_dir) -> CropDataset:
        c = self.config
        self.teacher = load_generator(c.teacher, self.device).model.to(memory_format=self.memory_format)
        self.data = CropDataset(load_photos(photos, max_side=c.max_side), c.image_size, c.batch_size, c.seed)
        return self.data

    def sample_inputs(self, val_photos: ImageSource | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        photos = self.data.center_crops(self.config.num_samples).photo.to(self.device)
        return photos, self.teacher_targets(photos) if len(photos) else None

    @torch.no_grad()
    def teacher_targets(self, photo: torch.Tensor) -> torch.Tensor:
        """The teacher's outputs for a batch of photos, (B, 3, S, S) in [-1, 1], fp32."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            out = self.teacher(photo)
        return out.float().clamp(-1, 1).contiguous(memory_format=self.memory_format)

    def targets(self, t: Trainer, batch: PairBatch) -> torch.Tensor:
        return self.teacher_targets(batch.photo)


MODES: dict[str, type[TrainingMode]] = {
    "unpaired": UnpairedMode,
    "paired": PairedMode,
    "distill": DistillMode,
}


def _prefixed(terms: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in terms.items()}
