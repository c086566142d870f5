"""The networks: generators (v1, v2), discriminator and the VGG19 feature extractor, built from configs."""

from __future__ import annotations

from torch import nn

from animegan.config import GeneratorConfig
from animegan.nn.generator_v1 import GeneratorV1
from animegan.nn.generator_v2 import GeneratorV2

__all__ = ["GeneratorV1", "GeneratorV2", "build_generator"]


def build_generator(config: GeneratorConfig) -> nn.Module:
    """The generator of `config.arch`, freshly initialised; `model.config` is `config`."""
    if config.arch == "v1":
        return GeneratorV1(config)
    return GeneratorV2(config)
