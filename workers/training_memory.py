"""A torch-free estimate of the memory one training step keeps, from a job's mode and hyperparameters: the API
refuses a combination no GPU could hold (422 naming the estimate) before it becomes a queued job that fails, or
an OOM-killed worker that a redelivery kills again.

The estimate is the sum of every layer's output over one step's forward passes (what autograd keeps for the
backward pass is of that order), in fp32. tests/workers/test_training_memory.py measures the per-pixel figures
below on the real networks with forward hooks and checks the preset shapes against animegan's presets.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.contracts.training import MODE_PRESETS, TrainingHyperparameters, TrainingMode

# Floats of layer outputs per input pixel and per unit of base width, one forward pass (measured at 64 px).
GENERATOR_FLOATS = {"v1": 85.0, "v2": 77.0}
DISCRIMINATOR_FLOATS = 7.3
# VGG19 up to conv4_4 (fixed widths), per input pixel.
VGG_FLOATS = 600.0
BYTES_PER_FLOAT = 4
# Weights, Adam state and the CUDA context: small beside the activations, a fixed allowance.
FIXED_BYTES = 1024**3


@dataclass(frozen=True)
class PresetShape:
    """The values of a preset (animegan.training.config.PRESETS) that the memory of a step depends on."""

    arch: str
    image_size: int
    batch_size: int
    generator_channels: int
    discriminator_channels: int


PRESET_SHAPES = {
    "v1": PresetShape("v1", 256, 6, 64, 64),
    "v2-hayao": PresetShape("v2", 256, 12, 32, 64),
    "v2-paprika": PresetShape("v2", 256, 12, 32, 64),
    "v2-shinkai": PresetShape("v2", 256, 12, 32, 64),
    "paired": PresetShape("v2", 256, 4, 32, 64),
    "distill": PresetShape("v2", 256, 4, 16, 64),
}


def estimate_step_bytes(
    mode: TrainingMode, hyper: TrainingHyperparameters, discriminator_channels: int | None = None
) -> int:
    """Bytes one training step of this job keeps on its device (an estimate; see the module docstring)."""
    preset = PRESET_SHAPES[(hyper.preset or MODE_PRESETS[mode]).value]
    size = hyper.image_size or preset.image_size
    batch = hyper.batch_size or preset.batch_size
    width = hyper.base_channels or preset.generator_channels
    d_width = discriminator_channels or preset.discriminator_channels
    if mode == TrainingMode.unpaired:
        # G on photos; D on anime, its grayscale, its smoothed edges and G's output; VGG on photo, output, gray.
        g_passes, d_passes, vgg_passes = 1, 4, 3
    else:
        perceptual = hyper.paired_losses is not None and (hyper.paired_losses.perceptual or 0) > 0
        # G (and, distilling, the teacher); D on output and target; VGG on both with a perceptual term.
        g_passes, d_passes, vgg_passes = (
            (2 if mode == TrainingMode.distill else 1),
            2,
            (2 if perceptual else 0),
        )
    per_pixel = (
        g_passes * GENERATOR_FLOATS[preset.arch] * width
        + d_passes * DISCRIMINATOR_FLOATS * d_width
        + vgg_passes * VGG_FLOATS
    )
    return int(batch * size * size * per_pixel * BYTES_PER_FLOAT) + FIXED_BYTES
