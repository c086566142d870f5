"""Generators: exact sizes of the reference networks, the port's state dict, the TF v1 checkpoint mapping,
reference computations on native sizes, and any input size in every upsample mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bl_reference import Generator as PortGenerator
from bl_reference import random_state_dict

from animegan.config import GeneratorConfig
from animegan.errors import ConfigError, WeightsError
from animegan.nn import GeneratorV1, GeneratorV2, build_generator
from animegan.nn.generator_v1 import state_dict_from_tf, tf_variable_map
from animegan.nn.layers import tf_legacy_resize

TF_V1_VARIABLES = Path(__file__).with_name("tf_v1_variables.txt")  # copy of the spec's checkpoint listing
MODES = ("tf_legacy", "align_corners", "scale_factor")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(arch: str, upsample: str = "tf_legacy", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(GeneratorConfig(arch=arch, base_channels=8, upsample=upsample, **kw)).eval()


def test_reference_parameter_counts():
    assert n_params(build_generator(GeneratorConfig(arch="v1"))) == 3_956_096
    assert n_params(build_generator(GeneratorConfig(arch="v2"))) == 2_143_552


def test_config_resolves_defaults_and_round_trips():
    cfg = GeneratorConfig(arch="v2")
    assert (cfg.base_channels, cfg.norm_eps, cfg.upsample) == (32, 1e-12, "tf_legacy")
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    assert GeneratorConfig(arch="v1").base_channels == 64
    g = build_generator(cfg)
    assert isinstance(g, GeneratorV2) and g.config is cfg
    assert isinstance(build_generator(GeneratorConfig(arch="v1", base_channels=8)), GeneratorV1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arch": "v3"}, "arch"),
        ({"upsample": "nearest"}, "upsample"),
        ({"base_channels": 0}, "base_channels"),
        ({"arch": "v1", "norm_eps": 1e-5}, "norm_eps"),
        ({"norm_eps": 2.0}, "norm_eps"),
    ],
)
def test_config_rejects_bad_values_by_name(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        GeneratorConfig(**kwargs)
    with pytest.raises(ConfigError, match="bogus"):
        GeneratorConfig.from_dict({"arch": "v2", "bogus": 1})


def test_v2_state_dict_equals_the_ports_keys_and_shapes():
    ours = {k: tuple(v.shape) for k, v in build_generator(GeneratorConfig(arch="v2")).state_dict().items()}
    port = {k: tuple(v.shape) for k, v in PortGenerator().state_dict().items()}
    assert len(port) == 77
    assert ours == port


@pytest.mark.parametrize("size", [(32, 32), (37, 29), (9, 64)])
def test_v2_align_corners_equals_the_port_hub_path(size):
    state = random_state_dict(width=8, seed=1)
    port = PortGenerator(width=8).eval()
    port.load_state_dict(state)
    ours = tiny("v2", "align_corners", norm_eps=1e-5)
    ours.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), port(x, align_corners=True), atol=1e-5, rtol=1e-4)


def test_v2_scale_factor_equals_the_port_test_script_path():
    state = random_state_dict(width=8, seed=3)
    port = PortGenerator(width=8).eval()
    port.load_state_dict(state)
    ours = tiny("v2", "scale_factor", norm_eps=1e-5)
    ours.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 40, 24, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), port(x, align_corners=False), atol=1e-5, rtol=1e-4)


def test_v2_tf_legacy_is_the_reference_graph_on_native_sizes():
    """Same blocks as the port, but the two x2 resizes are TF's legacy resize and the norm eps TF's 1e-12."""
    ours = tiny("v2")
    port = PortGenerator(width=8, eps=1e-12).eval()
    port.load_state_dict(ours.state_dict())
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        out = port.block_c(port.block_b(port.block_a(x)))
        out = port.block_d(tf_legacy_resize(out, (12, 16)))
        expected = port.out_layer(port.block_e(tf_legacy_resize(out, (24, 32))))
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-4)


def test_v2_eps_matters_and_is_configurable():
    a, b = tiny("v2"), tiny("v2", norm_eps=1e-5)
    b.load_state_dict(a.state_dict())
    assert a.block_a[0][2].eps == 1e-12 and b.block_a[0][2].eps == 1e-5
    # A nearly flat image: its variance (~1e-10) is far below 1e-5 but far above 1e-12.
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(8)) * 1e-5
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


@pytest.mark.parametrize("arch", ["v1", "v2"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (2, 9), (30, 30), (33, 17), (16, 20)])
def test_any_input_size_gives_same_size_finite_output(arch, mode, size):
    g = tiny(arch, mode)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and y.abs().max() <= 1


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_non_native_sizes_run_on_the_padded_image_and_crop(arch):
    g = tiny(arch)
    x = torch.rand(1, 3, 30, 22, generator=torch.Generator().manual_seed(7)) * 2 - 1
    padded = torch.nn.functional.pad(x, (0, 2, 0, 2), mode="reflect")  # to 32 x 24, a multiple of 4
    with torch.no_grad():
        torch.testing.assert_close(g(x), g(padded)[..., :30, :22])


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_backward_and_bf16_autocast(arch):
    g = tiny(arch).train()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    g(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g.parameters())
    g.eval()
    with torch.no_grad():
        ref = g(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = g(x.contiguous(memory_format=torch.channels_last))
    assert low.shape == ref.shape
    assert (low.float() - ref).abs().mean() < 0.05


def test_rejects_non_image_tensors():
    with pytest.raises(ValueError, match=r"\(1, 4, 8, 8\)"):
        tiny("v2")(torch.zeros(1, 4, 8, 8))


def parse_shape(line: str) -> tuple[int, ...]:
    inside = line[line.index("shape=[") + 7 : line.index("]")]
    return tuple(int(s) for s in inside.split(","))


def tf_listing() -> dict[str, tuple[int, ...]]:
    return {
        line.split()[0]: parse_shape(line)
        for line in TF_V1_VARIABLES.read_text().splitlines()
        if line.startswith("generator/")
    }


def test_v1_maps_one_to_one_onto_the_released_tf_checkpoint():
    listing = tf_listing()
    assert len(listing) == 129
    mapping = tf_variable_map()
    state = build_generator(GeneratorConfig(arch="v1")).state_dict()
    assert set(mapping) == set(state)
    assert sorted(name for name, _ in mapping.values()) == sorted(listing)
    for key, (name, perm) in mapping.items():
        tf_shape = listing[name]
        torch_shape = tuple(tf_shape[i] for i in perm) if perm else tf_shape
        assert tuple(state[key].shape) == torch_shape, (key, name)


def test_v1_tf_conversion_loads_strict_and_transposes():
    listing = tf_listing()
    rng = np.random.default_rng(0)
    tf = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in listing.items()}
    g = build_generator(GeneratorConfig(arch="v1"))
    g.load_state_dict(state_dict_from_tf(tf), strict=True)
    dw = tf["generator/G_MODEL/m/r3/r3/w"]  # (kh, kw, C, 1)
    assert g.m[3].layers[1][1].weight[7, 0, 2, 1].item() == dw[2, 1, 7, 0]
    pw = tf["generator/G_MODEL/b1/SeparableConv2d_1/pointwise_weights"]  # (1, 1, Cin, Cout)
    assert g.b1[2].resized.pointwise.weight[5, 9, 0, 0].item() == pw[0, 0, 9, 5]
    del tf["generator/G_MODEL/u1/Conv_1/weights"]
    with pytest.raises(WeightsError, match="u1/Conv_1"):
        state_dict_from_tf(tf)


def test_v1_downsample_branch_sees_every_other_pixel_on_native_sizes():
    """TF legacy x0.5 on even sizes samples src = 2 * dst exactly: the Downsample input is x[::2, ::2]."""
    g = tiny("v1")
    seen = {}
    g.b1[2].resized.register_forward_pre_hook(lambda _m, args: seen.setdefault("resized", args[0]))
    g.b1[2].strided.register_forward_pre_hook(lambda _m, args: seen.setdefault("full", args[0]))
    with torch.no_grad():
        g(torch.rand(1, 3, 16, 24) * 2 - 1)
    assert seen["resized"].shape[-2:] == (8, 12)
    torch.testing.assert_close(seen["resized"], seen["full"][..., ::2, ::2], rtol=0, atol=0)
