"""Reading TensorFlow checkpoints without TensorFlow, on a fixture written by TensorFlow 2.21 itself (TF1 graph
mode and tf.train.Saver, as the AnimeGAN v1 code saves; tests/animegan/data/make_tf_checkpoint.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from animegan.cli import main
from animegan.errors import WeightsError
from animegan.tfcheckpoint import checkpoint_prefix, read_checkpoint
from animegan.weights import describe, load_generator
from tests.animegan.tf_fixture import FIXTURE, WIDTH, value, variables

PREFIX = FIXTURE / "AnimeGAN.model-60"


@pytest.mark.parametrize(
    "given",
    [
        FIXTURE,
        PREFIX,
        PREFIX.with_name(PREFIX.name + ".index"),
        PREFIX.with_name(PREFIX.name + ".data-00000-of-00001"),
    ],
    ids=["folder", "prefix", "index", "data"],
)
def test_every_variable_reads_back_exactly(given):
    tensors = read_checkpoint(given)
    expected = variables()
    assert sorted(tensors) == sorted(expected)
    for name, shape in expected.items():
        assert tensors[name].dtype == np.float32 and tensors[name].shape == shape, name
        np.testing.assert_array_equal(tensors[name], value(name, shape), err_msg=name)


def test_the_state_file_of_another_machine_still_resolves(tmp_path):
    # TF writes absolute paths into `checkpoint`; the fixture's name a folder that does not exist here.
    copy = shutil.copytree(FIXTURE, tmp_path / "ckpt")
    (copy / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/run/AnimeGAN.model-60"\n')
    assert checkpoint_prefix(copy) == copy / "AnimeGAN.model-60"
    assert checkpoint_prefix(tmp_path / "nothing") is None


def test_the_generator_loads_with_tf_layouts_converted():
    loaded = load_generator(FIXTURE)
    assert loaded.config.arch == "v1" and loaded.config.base_channels == WIDTH
    assert loaded.config.upsample == "tf_legacy"
    assert loaded.metadata["format"] == "tf v1 checkpoint"
    state = loaded.model.state_dict()
    # Conv HWIO -> OIHW and depthwise (3, 3, C, 1) -> (C, 1, 3, 3).
    conv = "generator/G_MODEL/b1/Conv/weights"
    assert torch.equal(
        state["b1.0.1.weight"], torch.from_numpy(value(conv, variables()[conv])).permute(3, 2, 0, 1)
    )
    dw = "generator/G_MODEL/m/r1/r1/w"
    assert torch.equal(
        state["m.1.layers.1.1.weight"], torch.from_numpy(value(dw, variables()[dw])).permute(2, 3, 0, 1)
    )
    out = loaded.model(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    info = describe(FIXTURE)
    assert info["tensors"] == 129 and info["bytes"] > 280_000


def test_import_weights_cli_writes_an_export(tmp_path, capsys):
    dst = tmp_path / "hayao-v1.safetensors"
    assert main(["import-weights", str(PREFIX), str(dst), "--name", "hayao-v1"]) == 0
    assert "tf v1 checkpoint" in capsys.readouterr().out
    again = load_generator(dst)
    assert again.metadata["name"] == "hayao-v1" and again.config.arch == "v1"
    for key, tensor in load_generator(FIXTURE).model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], tensor), key


def test_damaged_checkpoints_fail_with_the_reason(tmp_path):
    copy = shutil.copytree(FIXTURE, tmp_path / "ckpt")
    data = copy / "AnimeGAN.model-60.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_checkpoint(copy)
    data.unlink()
    with pytest.raises(WeightsError, match="data shard AnimeGAN.model-60.data-00000-of-00001 is missing"):
        read_checkpoint(copy)
    index = copy / "AnimeGAN.model-60.index"
    index.write_bytes(b"\0" * 100)
    with pytest.raises(WeightsError, match="no table magic number"):
        read_checkpoint(copy)
    with pytest.raises(WeightsError, match="not a TensorFlow checkpoint"):
        read_checkpoint(tmp_path / "missing")
