"""ONNX both ways on tiny seeded generators: export (round trip against torch at several sizes, metadata), the
graph reader and its refusals, and ONNX graphs (ours NCHW, an NHWC one as AnimeGANv3's) in the Stylizer."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from torch import nn

from animegan.cli import main
from animegan.config import GeneratorConfig
from animegan.inference import InferenceOptions, Stylizer
from animegan.inference.onnx_generator import OnnxGenerator
from animegan.nn import build_generator
from animegan.onnx_export import export_onnx
from animegan.onnx_graph import (
    MAX_IR_VERSION,
    MAX_OPSET,
    OnnxGraphError,
    inspect_onnx,
    serving_layout,
)
from animegan.weights import save_generator

# The bar of issue 18: fp32 outputs in [-1, 1] within 1e-3 of torch's.
TOLERANCE = 1e-3


def tiny(arch: str, upsample: str = "tf_legacy", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_generator(GeneratorConfig(arch=arch, base_channels=8, upsample=upsample)).eval()


@pytest.fixture(scope="module")
def v2_graph(tmp_path_factory):
    generator = tiny("v2")
    path = export_onnx(generator, tmp_path_factory.mktemp("onnx") / "v2.onnx", metadata={"license": "test"})
    return generator, path


@pytest.mark.parametrize(
    ("arch", "upsample"), [("v2", "tf_legacy"), ("v2", "align_corners"), ("v1", "tf_legacy")]
)
def test_export_matches_torch_at_two_sizes(tmp_path, arch, upsample):
    generator = tiny(arch, upsample)
    path = export_onnx(generator, tmp_path / "g.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # Two sizes other than the traced 64x64 (square, and wide with a batch of 2): height and width are free.
    for shape in ((1, 3, 96, 96), (2, 3, 48, 128)):
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        with torch.no_grad():
            expected = generator(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == expected.shape
        diff = float(np.abs(got - expected).max())
        assert diff <= TOLERANCE, f"{arch}/{upsample} at {shape}: max abs diff {diff} > {TOLERANCE}"


def test_export_declares_dynamic_sizes_opset_and_processing(v2_graph):
    _, path = v2_graph
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    (image,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["animegan:layout"] == "NCHW" and props["animegan:input_range"] == "[-1, 1]"
    assert props["animegan:input_multiple"] == "4"
    assert "pixel / 127.5 - 1" in props["animegan:preprocess"]
    assert "(y + 1) * 127.5" in props["animegan:postprocess"]
    assert json.loads(props["animegan:config"])["base_channels"] == 8
    assert json.loads(props["animegan:metadata"])["license"] == "test"
    # The wire-format reader sees the same without onnx.
    info = inspect_onnx(path)
    assert info.opset == model.opset_import[0].version
    assert [t.name for t in info.inputs] == ["image"] and info.inputs[0].dims == (
        "batch",
        3,
        "height",
        "width",
    )
    assert info.metadata == props
    assert serving_layout(info) == "NCHW"


def test_cli_export_then_stylize_with_the_graph(tmp_path, capsys):
    weights = save_generator(tmp_path / "g.safetensors", tiny("v2"))
    out = tmp_path / "g.onnx"
    assert main(["export", str(weights), "--format", "onnx", "--out", str(out)]) == 0
    assert "opset 17" in capsys.readouterr().out
    assert main(["export", str(weights), "--out", str(out)]) == 2  # exists, no --force
    assert main(["export", str(weights), "--out", str(tmp_path / "g.bin")]) == 2
    assert main(["export", str(weights), "--out", str(out), "--force", "--opset", "12"]) == 2
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["layout"], info["opset"], info["exported_arch"]) == (
        "onnx",
        "NCHW",
        17,
        "v2",
    )
    assert "preprocess" in info["metadata"]
    Image.new("RGB", (40, 30), (200, 120, 40)).save(tmp_path / "in.png")
    args = ["stylize", str(tmp_path / "in.png"), "--model", str(out), "--out", str(tmp_path / "o")]
    assert main([*args, "--size-mode", "original", "--no-faces"]) == 0
    assert Image.open(tmp_path / "o" / "in.png").size == (40, 30)


def photos(count: int = 3, size: tuple[int, int] = (72, 52)) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(count)
    ]


def test_stylizer_runs_our_graph_like_torch_fp32(v2_graph):
    generator, path = v2_graph
    for options in (
        InferenceOptions(size_mode="original", precision="fp32", faces=False, batch_size=2),
        InferenceOptions(size_mode="reference", precision="fp32", faces=False),
    ):
        torch_out = Stylizer(generator, options=options).stylize_many(photos())
        graph = Stylizer(OnnxGenerator(path), options=options)
        assert graph.dtype is None  # ONNX runs in fp32 whatever the precision option
        onnx_out = graph.stylize_many(photos())
        for a, b in zip(torch_out, onnx_out, strict=True):
            assert a.size == b.size
            assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


def test_stylizer_tiles_an_onnx_graph(v2_graph):
    _, path = v2_graph
    options = InferenceOptions(
        size_mode="original", tile_size=64, tile_overlap=16, untiled_max_mb=0, faces=False
    )
    stylizer = Stylizer(OnnxGenerator(path), options=options)
    (out,) = stylizer.stylize_many(photos(1, (150, 90)))
    assert out.size == (150, 90)
    assert stylizer._tile_model is not None and not stylizer._tile_model.needs_stats


class Nhwc(nn.Module):
    """A generator as TensorFlow-born graphs take it: (1, H, W, 3) in, (1, H, W, 3) out."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def test_an_nhwc_graph_with_batch_one_is_served(v2_graph, tmp_path):
    generator, ours = v2_graph
    path = tmp_path / "nhwc.onnx"
    torch.onnx.export(
        Nhwc(generator), (torch.zeros(1, 64, 64, 3),), str(path), dynamo=False, opset_version=17,
        input_names=["x"], dynamic_axes={"x": {1: "h", 2: "w"}},
    )  # fmt: skip
    graph = OnnxGenerator(path)
    assert (graph.layout, graph.max_batch, graph.align, graph.ours) == ("NHWC", 1, 32, False)
    options = InferenceOptions(size_mode="original", faces=False, batch_size=4)
    stylizer = Stylizer(graph, options=options)
    assert stylizer.batch_size == 1
    got = stylizer.stylize_many(photos(2, (64, 64)))
    want = Stylizer(OnnxGenerator(ours), options=options).stylize_many(photos(2, (64, 64)))
    for a, b in zip(got, want, strict=True):
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


def _graph(inputs, opset: int = 17, ir: int = 8, domain: str = "") -> bytes:
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    node = helper.make_node("Identity", [inputs[0].name], ["y"])
    graph = helper.make_graph([node], "g", inputs, outputs)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir
    return model.SerializeToString()


def _input(name: str, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_graph([_input("a", [1, 3, "h", "w"]), _input("b", [1, 3, "h", "w"])]), "exactly one input"),
        (_graph([_input("a", [1, 4, "h", "w"])]), "cannot tell the layout"),
        (_graph([_input("a", [1, 3, 3, 3])]), "cannot tell the layout"),
        (_graph([_input("a", ["h", "w", 3])]), "rank-4"),
        (_graph([_input("a", [1, 3, "h", "w"], TensorProto.UINT8)]), "uint8"),
        (_graph([_input("a", [1, 3, "h", "w"])], opset=MAX_OPSET + 1), f"opset {MAX_OPSET + 1}"),
        (_graph([_input("a", [1, 3, "h", "w"])], ir=MAX_IR_VERSION + 1), "IR version"),
        (_graph([_input("a", [1, 3, "h", "w"])], domain="com.example.custom"), "custom op library"),
    ],
)
def test_graphs_it_cannot_serve_are_refused_naming_why(data, reason):
    with pytest.raises(OnnxGraphError, match=reason):
        serving_layout(inspect_onnx(data, "up.onnx"), "up.onnx")


def test_the_layouts_it_reads():
    assert serving_layout(inspect_onnx(_graph([_input("a", ["n", 3, "h", "w"])]))) == "NCHW"
    assert serving_layout(inspect_onnx(_graph([_input("a", [1, "h", "w", 3])]))) == "NHWC"


@pytest.mark.parametrize("data", [b"", b"not an onnx file at all", b"\x08\x07", b"PK\x03\x04" + b"\x00" * 40])
def test_bytes_that_are_not_onnx(data):
    with pytest.raises(OnnxGraphError, match="not an ONNX model|truncated|empty"):
        inspect_onnx(data, "x.onnx")


def test_the_limits_match_the_installed_onnxruntime():
    # MAX_OPSET and MAX_IR_VERSION restate what the pinned onnxruntime runs (the API has no onnxruntime).
    x = [_input("a", [1, 3, 4, 4])]
    ort.InferenceSession(_graph(x, opset=MAX_OPSET, ir=MAX_IR_VERSION))
    for data in (_graph(x, opset=MAX_OPSET + 1), _graph(x, ir=MAX_IR_VERSION + 1)):
        with pytest.raises(Exception, match="(?i)opset|ir version|unsupported"):
            ort.InferenceSession(data)
