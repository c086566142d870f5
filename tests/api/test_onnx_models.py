"""ONNX generators uploaded as models over real HTTP: checked by the API from their declarations alone (no onnx,
no onnxruntime, no torch in the API), registered with their layout, and refused with a 4xx naming why when the
Stylizer could not serve them."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from tests.api.conftest import error_of


def graph(inputs, opset: int = 17, domain: str | None = None, initializer_bytes: int = 0) -> bytes:
    """An Identity graph with these inputs (and optionally a large unused initializer)."""
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    inits = []
    if initializer_bytes:
        weights = helper.make_tensor(
            "w", TensorProto.FLOAT, [initializer_bytes // 4], b"\0" * initializer_bytes, raw=True
        )
        inits.append(weights)
    g = helper.make_graph(
        [helper.make_node("Identity", [inputs[0].name], ["y"])], "g", inputs, outputs, inits
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(g, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def image_input(dims, name="x", elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def upload(client, name: str, data: bytes, filename: str = "g.onnx"):
    return client.post("/v1/models", data={"name": name}, files={"file": (filename, data)})


def test_our_export_and_an_nhwc_graph_are_registered_with_their_layout(alice, api, tmp_path):
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.onnx_export import export_onnx

    torch.manual_seed(0)
    ours = export_onnx(build_generator(GeneratorConfig(arch="v2", base_channels=8)), tmp_path / "ours.onnx")
    created = upload(alice, "ours-onnx", ours.read_bytes(), filename="model.bin")  # told by its bytes
    assert created.status_code == 201, created.text
    config = created.json()["config"]
    assert (config["arch"], config["layout"], config["opset"], config["exported_arch"]) == (
        "onnx",
        "NCHW",
        17,
        "v2",
    )
    info = api.registry.get("ours-onnx", "alice")
    assert (
        info.key.endswith("/ours-onnx/generator.onnx") and api.store.get_bytes(info.key) == ours.read_bytes()
    )
    nhwc = upload(alice, "v3-style", graph([image_input([1, "h", "w", 3], "AnimeGANv3_input:0")]))
    assert nhwc.status_code == 201, nhwc.text
    assert nhwc.json()["config"]["layout"] == "NHWC" and nhwc.json()["config"]["input_shape"] == [
        1,
        "h",
        "w",
        3,
    ]
    stylize = alice.post("/v1/stylize", data={"model": "v3-style"}, files={"file": ("a.png", _png())})
    assert stylize.status_code == 202  # usable by every route like any model
    export = alice.post("/v1/models/v3-style/exports")
    assert export.status_code == 422 and error_of(export)["code"] == "already_onnx"


def _png() -> bytes:
    from tests.api.conftest import png_bytes

    return png_bytes((40, 32))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            graph([image_input([1, 3, "h", "w"], "a"), image_input([1, 3, "h", "w"], "b")]),
            "exactly one input",
        ),
        (graph([image_input([1, 4, "h", "w"])]), "cannot tell the layout"),
        (graph([image_input(["h", "w", 3])]), "rank-4"),
        (graph([image_input([1, 3, "h", "w"], elem=TensorProto.UINT8)]), "uint8"),
        (graph([image_input([1, 3, "h", "w"])], opset=30), "opset 30"),
        (graph([image_input([1, 3, "h", "w"])], domain="com.example.ops"), "custom op library"),
    ],
)
def test_graphs_it_cannot_serve_are_422_naming_why(alice, data, reason):
    refused = upload(alice, "refused", data)
    assert refused.status_code == 422, refused.text
    assert error_of(refused)["code"] == "unsupported_onnx_graph" and reason in error_of(refused)["message"]


def test_bytes_that_are_no_model_are_415(alice):
    for data in (
        b"hello, this is not a model",
        onnx.helper.make_tensor("t", TensorProto.FLOAT, [1], [0.0]).SerializeToString(),
    ):
        refused = upload(alice, "junk", data)
        assert refused.status_code == 415 and error_of(refused)["code"] == "not_a_model", refused.text


def test_a_large_graph_is_checked_without_decoding_its_weights(alice, api):
    from workers import keys

    data = graph([image_input([1, 3, "h", "w"])], initializer_bytes=48 << 20)
    # A direct upload (above the request body limit): its bytes put into storage as the presigned PUT would.
    upload_id = alice.post("/v1/uploads", json={"purpose": "model", "size": len(data)}).json()["id"]
    api.store.put_bytes(keys.upload("alice", upload_id), data)
    before = api.process.peak_rss_bytes()
    created = alice.post("/v1/models", data={"name": "big-onnx", "upload_id": upload_id})
    grown = api.process.peak_rss_bytes() - before
    assert created.status_code == 201, created.text
    # The API holds the uploaded bytes (as for every model upload) and walks them in place: decoding the graph
    # (onnx.load) would hold a second copy of the 48 MiB of weights on top.
    assert grown < 1.5 * len(data), (
        f"the API's peak RSS grew by {grown >> 20} MiB for a {len(data) >> 20} MiB graph"
    )


def test_an_onnx_model_cannot_be_a_teacher(alice, api):
    from tests.api.test_validation import zip_of

    api.registry.register("graph-teacher", "alice", "models/users/alice/graph-teacher/generator.onnx",
                          {"arch": "onnx"}, source="uploaded")  # fmt: skip
    photos = zip_of({f"p{i}.png": _png() for i in range(3)})
    form = {"name": "student", "mode": "distill", "teacher": "graph-teacher"}
    refused = alice.post("/v1/trainings", data=form, files={"photos": ("p.zip", photos)})
    assert refused.status_code == 422, refused.text
    assert "teacher" in error_of(refused)["message"] and "ONNX" in error_of(refused)["message"]
