"""The torch-free training memory estimate (workers.training_memory) against the real networks and presets."""

from __future__ import annotations

import pytest
import torch

from animegan.config import DiscriminatorConfig, GeneratorConfig
from animegan.nn import build_discriminator, build_generator
from animegan.training import TrainConfig
from workers.contracts.training import TrainingHyperparameters, TrainingMode
from workers.training_memory import (
    DISCRIMINATOR_FLOATS,
    GENERATOR_FLOATS,
    PRESET_SHAPES,
    estimate_step_bytes,
)


def output_floats(model: torch.nn.Module, side: int = 64) -> int:
    """The sum of every leaf layer's output size over one forward pass of a side x side image."""
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    for hook in hooks:
        hook.remove()
    return total


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_per_pixel_figures_match_the_networks(arch):
    width = 8
    measured = output_floats(build_generator(GeneratorConfig(arch=arch, base_channels=width))) / (
        64 * 64 * width
    )
    assert measured == pytest.approx(GENERATOR_FLOATS[arch], rel=0.1)
    d_width = 32
    d = output_floats(build_discriminator(DiscriminatorConfig(arch=arch, base_channels=d_width)))
    assert d / (64 * 64 * d_width) == pytest.approx(DISCRIMINATOR_FLOATS, rel=0.15)


@pytest.mark.parametrize("name", sorted(PRESET_SHAPES))
def test_preset_shapes_are_animegans_presets(name):
    config = TrainConfig.from_preset(name)
    shape = PRESET_SHAPES[name]
    assert (shape.arch, shape.image_size, shape.batch_size) == (
        config.generator.arch,
        config.image_size,
        config.batch_size,
    )
    assert (shape.generator_channels, shape.discriminator_channels) == (
        config.generator.base_channels,
        config.discriminator.base_channels,
    )


def test_the_estimate_grows_with_each_factor_and_separates_sane_from_impossible():
    default = estimate_step_bytes(TrainingMode.unpaired, TrainingHyperparameters())
    assert 4 * 1024**3 < default < 40 * 1024**3
    huge = TrainingHyperparameters(image_size=1024, batch_size=64, base_channels=128)
    assert estimate_step_bytes(TrainingMode.paired, huge) > 1024**4  # over a terabyte: no GPU holds it
    small = estimate_step_bytes(TrainingMode.paired, TrainingHyperparameters(image_size=128))
    assert small < estimate_step_bytes(TrainingMode.paired, TrainingHyperparameters(image_size=256))
