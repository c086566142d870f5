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
from tests.animegan.tf_fixture import FIXTURE, WIDTH, fixture_input, value, variables

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
    (copy / "checkpoint").unlink()  # without a state file a folder must hold exactly one checkpoint
    assert checkpoint_prefix(copy) == copy / "AnimeGAN.model-60"
    shutil.copy(copy / "AnimeGAN.model-60.index", copy / "AnimeGAN.model-50.index")
    with pytest.raises(WeightsError, match="holds 2 TensorFlow checkpoints .*AnimeGAN.model-50"):
        checkpoint_prefix(copy)


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


def test_the_port_computes_what_tensorflow_computes():
    """tf_output.npy is TensorFlow's forward of the v1 graph (TF ops: REFLECT pads, separable_conv2d,
    resize_bilinear without half-pixel centers, moments-based instance norm) on the same weights and input."""
    tf_out = torch.from_numpy(np.load(FIXTURE / "tf_output.npy")).permute(0, 3, 1, 2).double()
    x = torch.from_numpy(fixture_input()).permute(0, 3, 1, 2)
    model = load_generator(FIXTURE).model
    with torch.no_grad():
        fp32 = model(x).double()
        exact = model.double()(x.double())
    # The fixture's weights (up to +-1) make the graph chaotic: an input change of 1e-7 moves the output by 7e-4.
    # So compare in float64, where the port is exact and what remains is TensorFlow's own fp32 round-off
    # (1.9e-4). Mistakes show: top/left stride-2 padding or half-pixel resizing give 2.0, eps 1e-5 instead of
    # 1e-6 in the separable convs 3.5e-4.
    assert (exact - tf_out).abs().max() < 2.5e-4
    assert (fp32 - tf_out).abs().max() < 5e-3  # measured 2.3e-3: PyTorch's fp32 GroupNorm kernel's round-off
