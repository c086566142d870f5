"""`animegan smooth-edges`: write the edge-smoothed versions of style images (the reference's smooth/ folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from animegan.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "smooth-edges",
        help="edge-smooth style images (Canny, dilate, Gaussian) for training",
        description="Resize/crop each style image to SIZE and blur its dilated Canny edges as AnimeGAN's "
        "tools/edge_smooth.py does; writes OUT/<name>.png. Training computes and caches this itself; use the "
        "folder with `animegan train --smoothed OUT` to share it between runs.",
    )
    p.add_argument("style_dir", type=Path, help="folder of style images")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--size", type=int, default=256, help="square side in pixels (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from animegan.data import smooth_folder

    if args.size < 16:
        raise ConfigError(f"--size {args.size} is too small; use at least 16 (training uses 256)")
    if args.out.resolve() == args.style_dir.resolve():
        raise ConfigError(f"--out {args.out} is the style folder itself; choose another folder")
    written = smooth_folder(args.style_dir, args.out, args.size)
    print(f"wrote {len(written)} smoothed images ({args.size}x{args.size}) to {args.out}")
    return 0
