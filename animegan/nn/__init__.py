"""The networks: generators (v1, v2), discriminator and the VGG19 feature extractor, built from configs."""

from __future__ import annotations

from torch import nn

from animegan.config import DiscriminatorConfig, GeneratorConfig
from animegan.nn.discriminator import Discriminator
from animegan.nn.generator_v1 import GeneratorV1
from animegan.nn.generator_v2 import GeneratorV2
from animegan.nn.vgg import VGG19Features

__all__ = [
    "Discriminator",
    "GeneratorV1",
    "GeneratorV2",
    "VGG19Features",
    "build_discriminator",
    "build_generator",
]


def build_generator(config: GeneratorConfig) -> nn.Module:
    """The generator of `config.arch`, freshly initialised; `model.config` is `config`."""
    if config.arch == "v1":
        return GeneratorV1(config)
    return GeneratorV2(config)


def build_discriminator(config: DiscriminatorConfig) -> nn.Module:
    """The discriminator of `config`, freshly initialised; `model.config` is `config`."""
    return Discriminator(config)
