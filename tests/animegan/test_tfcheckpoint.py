"""Reading TensorFlow checkpoints without TensorFlow, on fixtures written by TensorFlow 2.21 itself (TF1 graph
mode and tf.train.Saver, as the AnimeGAN code saves: a v1 training checkpoint and a v2 generator-only one;
tests/animegan/data/make_tf_checkpoint.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from animegan.cli import main
from animegan.errors import WeightsError
from animegan.tfcheckpoint import checkpoint_prefix, read_checkpoint
from animegan.weights import describe, load_generator
from tests.animegan.tf_fixture import FIXTURE, FIXTURES, WIDTH, fixture_input, value, variables

PREFIX = FIXTURE / "AnimeGAN.model-60"


PREFIXES = {"v1": PREFIX, "v2": FIXTURES["v2"] / "Hayao-64.ckpt"}


@pytest.mark.parametrize("arch", ["v1", "v2"])
@pytest.mark.parametrize("form", ["folder", "prefix", "index", "data"])
def test_every_variable_reads_back_exactly(arch, form):
    prefix = PREFIXES[arch]
    given = {
        "folder": prefix.parent,
        "prefix": prefix,
        "index": prefix.with_name(prefix.name + ".index"),
        "data": prefix.with_name(prefix.name + ".data-00000-of-00001"),
    }[form]
    tensors = read_checkpoint(given)
    expected = variables(arch)
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


# arch -> (float64 tolerance, float32 tolerance). v1: the fixture's weights (up to +-1) make the graph chaotic
# (an input change of 1e-7 moves the output by 7e-4), so the float64 port is compared, leaving TensorFlow's own
# fp32 round-off (1.9e-4); its fp32 output is 2.3e-3 off (PyTorch's fp32 GroupNorm kernel). Mistakes show: v1
# top/left stride-2 padding or half-pixel resizing 2.0, eps 1e-5 instead of 1e-6 in the separable convs 3.5e-4;
# v2 (measured 1.5e-5 / 1.7e-5) align_corners or scale_factor upsampling 0.30 / 0.18.
TOLERANCES = {"v1": (2.5e-4, 5e-3), "v2": (5e-5, 5e-5)}


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_the_port_computes_what_tensorflow_computes(arch):
    """tf_output.npy is TensorFlow's forward of the AG1 / AG2 graph (TF ops: REFLECT pads, separable_conv2d or
    biased depthwise_conv2d, resize_bilinear without half-pixel centers, moments-based instance / layer norm) on
    the same weights and input."""
    fixture = FIXTURES[arch]
    tf_out = torch.from_numpy(np.load(fixture / "tf_output.npy")).permute(0, 3, 1, 2).double()
    x = torch.from_numpy(fixture_input()).permute(0, 3, 1, 2)
    loaded = load_generator(fixture)
    assert loaded.config.arch == arch and loaded.config.upsample == "tf_legacy"
    with torch.no_grad():
        fp32 = loaded.model(x).double()
        exact = loaded.model.double()(x.double())
    exact_tol, fp32_tol = TOLERANCES[arch]
    assert (exact - tf_out).abs().max() < exact_tol
    assert (fp32 - tf_out).abs().max() < fp32_tol


def test_v2_checkpoints_import_faithful_to_tensorflow():
    """AG2's names (bryandlee's convert_weights.py maps the same ones) onto the port's keys, with the TF graph's
    legacy resize and layer-norm epsilon 1e-12 rather than the port's align_corners and 1e-5."""
    loaded = load_generator(PREFIXES["v2"])
    assert loaded.metadata["format"] == "tf v2 checkpoint" and loaded.config.norm_eps == 1e-12
    state = loaded.model.state_dict()
    name = "generator/G_MODEL/C/r2/r2/bias"
    assert torch.equal(
        state["block_c.2.layers.1.1.bias"], torch.from_numpy(value(name, variables("v2")[name]))
    )
    name = "generator/G_MODEL/C/Conv_1/weights"  # the Conv-Block after the IRBs
    expected = torch.from_numpy(value(name, variables("v2")[name])).permute(3, 2, 0, 1)
    assert torch.equal(state["block_c.5.1.weight"], expected)
