"""Weights files: safetensors export round trip (no unpickling), bryandlee import, checkpoints, bad files."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from bl_reference import Generator as PortGenerator
from bl_reference import random_state_dict
from safetensors.torch import save_file
from test_stylizer import tiny

from animegan.errors import WeightsError
from animegan.weights import describe, import_weights, load_generator, save_generator


def sample_input(h: int = 36, w: int = 44) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(1, 3, h, w) * 2 - 1


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_export_round_trip_gives_equal_outputs(tmp_path, arch):
    model = tiny(arch)
    path = save_generator(
        tmp_path / "m.safetensors", model, {"name": "hayao-test", "source": "unit", "step": 7}
    )
    loaded = load_generator(path)
    assert loaded.config == model.config
    assert loaded.metadata["name"] == "hayao-test" and loaded.metadata["step"] == 7
    assert loaded.metadata["arch"] == arch and "created" in loaded.metadata
    x = sample_input()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), atol=0, rtol=0)
    assert not loaded.model.training


def test_half_precision_export_is_half_the_size_and_loads_as_fp32(tmp_path):
    model = tiny("v2")
    full = save_generator(tmp_path / "full.safetensors", model)
    half = save_generator(tmp_path / "half.safetensors", model, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_generator(half)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    x = sample_input()
    with torch.no_grad():
        reference, out = model(x), loaded.model(x)
    assert not torch.equal(reference, out)  # the weights were rounded ...
    # ... by fp16's 11-bit mantissa only: the output moves by less than one 8-bit level (2/255 in [-1, 1])
    assert (out - reference).abs().max() < 2 / 255


def test_loading_an_export_never_unpickles(tmp_path, monkeypatch):
    path = save_generator(tmp_path / "m.safetensors", tiny())

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_generator(path).config.arch == "v2"
    assert describe(path)["format"] == "safetensors export"


def test_bryandlee_import_is_strict_and_matches_the_port(tmp_path):
    state = random_state_dict(width=8, seed=3)
    assert len(state) == 77
    src = tmp_path / "paprika.pt"
    torch.save(state, src)
    dst = tmp_path / "paprika.safetensors"
    import_weights(src, dst)
    loaded = load_generator(dst)
    cfg = loaded.config
    assert (cfg.arch, cfg.base_channels, cfg.upsample, cfg.norm_eps) == ("v2", 8, "align_corners", 1e-5)
    assert loaded.metadata["name"] == "paprika" and loaded.metadata["source"] == "bryandlee:paprika.pt"
    port = PortGenerator(width=8, eps=1e-5).eval()
    port.load_state_dict(state, strict=True)
    for h, w in ((32, 32), (37, 50)):
        x = sample_input(h, w)
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), port(x, align_corners=True), atol=1e-5, rtol=1e-4)


def test_pt_files_load_directly_too(tmp_path):
    torch.save(random_state_dict(width=8), tmp_path / "face.pt")
    info = describe(tmp_path / "face.pt")
    assert info["format"] == "bryandlee .pt" and info["tensors"] == 77
    assert info["params"] == sum(p.numel() for p in load_generator(tmp_path / "face.pt").model.parameters())


def test_training_checkpoint_generator_part(tmp_path):
    from animegan.training.checkpoint import save_checkpoint

    model = tiny("v1")
    path = save_checkpoint(
        tmp_path / "step-00000010.pt",
        {
            "step": 10,
            "generator": model.state_dict(),
            "generator_config": model.config.to_dict(),
            "discriminator": {},
        },
    )
    loaded = load_generator(path)
    assert loaded.config == model.config and loaded.metadata["step"] == 10
    import_weights(path, tmp_path / "exported.safetensors", name="my-style")
    again = load_generator(tmp_path / "exported.safetensors")
    assert again.metadata["name"] == "my-style" and again.metadata["step"] == 10
    x = sample_input()
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), model(x), atol=0, rtol=0)


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_generator(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a not weights at all")
    with pytest.raises(WeightsError, match=r"junk\.bin.*accepted: our generator export"):
        load_generator(junk)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty.pt"):
        load_generator(empty)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"block_a.0.1.weight": Payload()}, path)
    with pytest.raises(WeightsError, match="refused to unpickle"):
        load_generator(path)


def test_foreign_safetensors_and_wrong_shapes(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(WeightsError, match="without our header"):
        load_generator(plain)
    state = random_state_dict(width=8)
    state["block_e.2.1.weight"] = torch.zeros(8, 16, 3, 3)
    torch.save(state, tmp_path / "bad_shape.pt")
    with pytest.raises(WeightsError, match=r"block_e\.2\.1\.weight: file \(8, 16, 3, 3\)"):
        load_generator(tmp_path / "bad_shape.pt")
    del state["out_layer.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(WeightsError, match="neither a bryandlee state dict"):
        load_generator(tmp_path / "renamed.pt")


def test_export_header_is_plain_json(tmp_path):
    path = save_generator(tmp_path / "m.safetensors", tiny(), {"name": "x"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])["__metadata__"]
    assert header["format"] == "animegan-generator" and json.loads(header["config"])["base_channels"] == 8
    assert json.loads(header["metadata"])["name"] == "x"
