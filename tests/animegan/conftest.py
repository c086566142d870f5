"""Fixtures of the model-library tests: seeded random VGG19 weight files in both accepted formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from vgg_fixtures import write_vgg19_npy, write_vgg19_torchvision


@pytest.fixture(scope="session")
def vgg19_npy(tmp_path_factory) -> Path:
    """A Caffe-format vgg19.npy (random, seed 0) up to conv4_4, written once per session."""
    return write_vgg19_npy(tmp_path_factory.mktemp("vgg") / "vgg19.npy", seed=0)


@pytest.fixture(scope="session")
def vgg19_pth(tmp_path_factory) -> Path:
    """A torchvision-format vgg19 state dict (same random weights as vgg19_npy) up to conv4_4."""
    return write_vgg19_torchvision(tmp_path_factory.mktemp("vgg") / "vgg19.pth", seed=0)
