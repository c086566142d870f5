"""`animegan info FILE`: what a weights file holds (format, arch, parameters, config, metadata); for an ONNX
generator its layout, opset, input and metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="describe a weights file", description=__doc__)
    p.add_argument(
        "file", type=Path, help="a .safetensors export, training checkpoint, bryandlee .pt or .onnx generator"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def format_description(info: dict) -> str:
    """The human-readable form of weights.describe()."""
    # arch is also a config field and an export's metadata key: it is shown once, on its own line.
    lines = [
        f"file:    {info['path']} ({info['bytes']:,} bytes)",
        f"format:  {info['format']}",
        f"arch:    {info['arch']}",
        f"params:  {info['params']:,} in {info['tensors']} tensors",
        "config:  " + ", ".join(f"{k}={v}" for k, v in info["config"].items() if k != "arch"),
    ]
    for key, value in sorted(info["metadata"].items()):
        if key != "arch":
            lines.append(f"{key + ':':<8} {value}")
    return "\n".join(lines)


def describe_onnx(path: Path) -> dict:
    """What an ONNX generator declares (read without onnx or torch) and whether the Stylizer can serve it."""
    from animegan.onnx_graph import META_PREFIX, describe_graph, inspect_onnx, serving_layout

    graph = inspect_onnx(path, path.name)
    served = describe_graph(graph, serving_layout(graph, path.name))
    metadata = {
        k.removeprefix(META_PREFIX): v for k, v in graph.metadata.items() if k != f"{META_PREFIX}config"
    }
    return {"path": str(path), "bytes": path.stat().st_size, "format": "onnx", **served, "metadata": metadata}


def run(args: argparse.Namespace) -> int:
    if args.file.suffix.lower() == ".onnx":
        info = describe_onnx(args.file)
        lines = [f"{k + ':':<12} {v}" for k, v in info.items() if k != "metadata"]
        lines += [f"{k + ':':<12} {v}" for k, v in sorted(info["metadata"].items())]
        print(json.dumps(info, indent=2) if args.json else "\n".join(lines))
        return 0
    from animegan.weights import describe  # torch and safetensors: only when the command runs

    info = describe(args.file)
    print(json.dumps(info, indent=2, default=str) if args.json else format_description(info))
    return 0
