"""Checkpoint format (atomic, weights-only, versioned), RNG capture, and TrainConfig presets/round trips."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from animegan.errors import ConfigError, WeightsError
from animegan.training import TrainConfig
from animegan.training.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
)


def test_save_is_atomic_versioned_and_weights_only(tmp_path):
    path = checkpoint_path(tmp_path, 12)
    state = {"step": 12, "phase": "gan", "weights": {"w": torch.arange(4.0)}, "config": {"a": [1, 2.5, "x"]}}
    save_checkpoint(path, state)
    assert path.name == "step-00000012.pt"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temp file left behind"

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "animegan-train" and raw["format_version"] == 1
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"]["w"], torch.arange(4.0))
    assert loaded["config"] == {"a": [1, 2.5, "x"]}


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(WeightsError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not an AnimeGAN training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "animegan-train", "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(WeightsError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_latest_list_and_prune(tmp_path):
    for step in (5, 100, 20):
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
    (tmp_path / "checkpoints" / ".step-00000200.pt.abc.tmp").write_bytes(b"half written")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-00000005.pt",
        "step-00000020.pt",
        "step-00000100.pt",
    ]
    assert latest_checkpoint(tmp_path).name == "step-00000100.pt"
    assert latest_checkpoint(tmp_path / "nothing") is None
    deleted = prune_checkpoints(tmp_path, keep=1)
    assert [p.name for p in deleted] == ["step-00000005.pt", "step-00000020.pt"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000100.pt"]


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_presets_hold_the_reference_hyperparameters():
    v1 = TrainConfig.from_preset("v1")
    assert (v1.epochs, v1.init_epochs, v1.batch_size, v1.init_lr, v1.g_lr, v1.d_lr) == (
        101,
        5,
        6,
        1e-4,
        8e-5,
        16e-5,
    )
    assert v1.generator.arch == "v1" and v1.losses.sty == 3.0 and v1.losses.d_smooth == 0.1
    for name in ("v2-hayao", "v2-paprika", "v2-shinkai"):
        cfg = TrainConfig.from_preset(name)
        assert (cfg.epochs, cfg.init_epochs, cfg.batch_size, cfg.init_lr, cfg.g_lr, cfg.d_lr) == (
            101,
            10,
            12,
            2e-4,
            2e-5,
            4e-5,
        )
        assert cfg.generator.arch == "v2" and cfg.betas == (0.5, 0.999)
    assert TrainConfig.from_preset("v2-paprika").losses.color == 50.0
    assert TrainConfig.from_preset("v2-hayao").losses.color == 15.0


def test_overrides_round_trip_and_validation(tmp_path):
    cfg = TrainConfig.from_preset(
        "v2-shinkai",
        image_size=64,
        batch_size=2,
        generator={"base_channels": 8},
        losses={"tv": 0.5},
        vgg_weights="/x/vgg.npy",
    )
    assert cfg.generator.base_channels == 8 and cfg.generator.arch == "v2"
    assert cfg.losses.tv == 0.5 and cfg.losses.sty == 2.0
    cfg.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["generator"]["base_channels"] == 8 and data["betas"] == [0.5, 0.999]
    assert TrainConfig.load(tmp_path / "config.json") == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg

    assert cfg.differences(cfg.replace(device="cpu", epochs=200)) == []
    assert cfg.differences(cfg.replace(seed=7)) == ["seed: 0 != 7"]
    other = cfg.replace(generator=cfg.generator.__class__(arch="v2", base_channels=16))
    assert cfg.differences(other) == ["generator.base_channels: 8 != 16"]

    with pytest.raises(ConfigError, match="batch_size=0"):
        TrainConfig.from_preset("v1", batch_size=0)
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        TrainConfig.from_preset("v1", batchsize=4)
    with pytest.raises(ConfigError, match="unknown training preset 'v3'"):
        TrainConfig.from_preset("v3")
    with pytest.raises(ConfigError, match="precision='fp16'"):
        TrainConfig.from_preset("v1", precision="fp16")
    with pytest.raises(ConfigError, match="init_epochs=5 exceeds epochs=2"):
        TrainConfig.from_preset("v1", epochs=2)
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": 1})
