"""`animegan info FILE`: what a weights file holds (format, arch, parameters, config, metadata)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="describe a weights file", description=__doc__)
    p.add_argument("file", type=Path, help="a .safetensors export, training checkpoint or bryandlee .pt")
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


def run(args: argparse.Namespace) -> int:
    from animegan.weights import describe  # torch and safetensors: only when the command runs

    info = describe(args.file)
    print(json.dumps(info, indent=2, default=str) if args.json else format_description(info))
    return 0
