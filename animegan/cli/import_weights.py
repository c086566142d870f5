"""`animegan import-weights SRC DST`: convert a bryandlee/animegan2-pytorch .pt, a training checkpoint or an
original AnimeGAN / AnimeGANv2 TensorFlow checkpoint into our safetensors export, which carries its config and loads
without unpickling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animegan.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-weights", help="convert a bryandlee .pt into our export", description=__doc__
    )
    p.add_argument(
        "src",
        type=Path,
        help="bryandlee v2 .pt (e.g. paprika.pt), a training checkpoint, or an AnimeGAN / AnimeGANv2 TF "
        "checkpoint (its folder, PREFIX such as Hayao-64.ckpt, or PREFIX.index)",
    )
    p.add_argument("dst", type=Path, help="output .safetensors file")
    p.add_argument("--name", help="model name stored in the metadata (default: the source file's stem)")
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from animegan.weights import import_weights  # torch and safetensors: only when the command runs

    if args.dst.exists() and not args.force:
        raise ConfigError(f"{args.dst} exists; pass --force to overwrite it")
    if args.dst.suffix != ".safetensors":
        raise ConfigError(f"DST {args.dst} should end in .safetensors (the export is a safetensors file)")
    loaded = import_weights(args.src, args.dst, name=args.name)
    params = sum(p.numel() for p in loaded.model.parameters())
    cfg = loaded.config
    print(
        f"imported {args.src} ({loaded.metadata.get('format')}) -> {args.dst}: {cfg.arch}, "
        f"base_channels={cfg.base_channels}, upsample={cfg.upsample}, {params:,} params"
    )
    return 0
