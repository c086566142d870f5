"""`animegan export MODEL --format onnx --out FILE`: write a generator as an ONNX graph (dynamic batch, height
and width; its pre/post-processing in the file's metadata) that onnxruntime, OpenVINO or TensorRT can run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animegan.errors import ConfigError
from animegan.onnx_graph import MAX_OPSET, MIN_EXPORT_OPSET

FORMATS = ("onnx",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a generator to ONNX", description=__doc__)
    p.add_argument(
        "model",
        type=Path,
        metavar="MODEL",
        help="our .safetensors export, a training checkpoint, a bryandlee .pt or a TF checkpoint",
    )
    p.add_argument("--format", choices=FORMATS, default="onnx", help="the output format (onnx)")
    p.add_argument("--out", type=Path, required=True, help="the output file (.onnx)")
    p.add_argument(
        "--opset",
        type=int,
        default=MIN_EXPORT_OPSET,
        help=f"ONNX opset, {MIN_EXPORT_OPSET}..{MAX_OPSET} (default {MIN_EXPORT_OPSET})",
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise ConfigError(f"{args.out} exists; pass --force to overwrite it")
    if args.out.suffix != ".onnx":
        raise ConfigError(f"--out {args.out} should end in .onnx")
    if not MIN_EXPORT_OPSET <= args.opset <= MAX_OPSET:
        raise ConfigError(f"--opset {args.opset}: use {MIN_EXPORT_OPSET}..{MAX_OPSET}")
    # Torch and onnx load here, not at import: building the parser stays light.
    from animegan.onnx_export import export_onnx
    from animegan.weights import load_generator

    loaded = load_generator(args.model)
    metadata = {k: v for k, v in loaded.metadata.items() if k != "format" and v is not None}
    export_onnx(loaded.model, args.out, opset=args.opset, metadata=metadata)
    size = args.out.stat().st_size
    print(
        f"exported {args.model} ({loaded.config.arch}) -> {args.out}: ONNX opset {args.opset}, {size:,} bytes"
    )
    return 0
