"""The check of an uploaded ONNX generator (POST /v1/models): its declarations only, read by animegan.onnx_graph
from the protobuf wire format in place (weights skipped, nothing decoded; no onnx, no onnxruntime, no torch)."""

from __future__ import annotations

from typing import Any

from animegan.onnx_graph import OnnxGraphError, describe_graph, inspect_onnx, serving_layout
from api.errors import ApiError


def check_onnx(data: bytes, name: str) -> dict[str, Any]:
    """The registry config of a graph the Stylizer can serve; 415 for bytes that are not ONNX, 422 naming why
    for a graph it cannot serve (inputs, layout, element type, opset, IR version, custom ops, external data)."""
    try:
        info = inspect_onnx(data, name)
    except OnnxGraphError as exc:
        raise ApiError(
            415,
            "not_a_model",
            f"{exc}; accepted: our .safetensors export, the AnimeGANv2 port's .pt, or an ONNX generator",
        ) from exc
    try:
        layout = serving_layout(info, name)
    except OnnxGraphError as exc:
        raise ApiError(422, "unsupported_onnx_graph", str(exc)) from exc
    return describe_graph(info, layout)
