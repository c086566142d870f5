"""`animegan stylize INPUT... --model FILE --out DIR`: stylize image files and folders with a progress bar."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from animegan.errors import AnimeGANError, ConfigError, ImageError
from animegan.inference.imageio import DEFAULT_MAX_PIXELS, encode_image, load_image, normalize_format

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
NO_MODEL_HELP = (
    "stylize needs --model FILE. Get weights by importing a published AnimeGANv2 PyTorch-port file "
    "(github.com/bryandlee/animegan2-pytorch, weights/paprika.pt etc.): "
    "`animegan import-weights paprika.pt paprika.safetensors`, or train a style with `animegan train`. "
    "--untrained-demo runs a seeded random generator instead (its output is not a style)."
)
DEMO_SUFFIX = ".untrained-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stylize", help="stylize images with a generator", description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    p.add_argument(
        "--model",
        type=Path,
        help="weights: our .safetensors export, a training checkpoint, a bryandlee .pt, or an ONNX generator "
        "(.onnx: ours or NHWC ones such as AnimeGANv3's, run by onnxruntime in fp32)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument(
        "--size-mode",
        choices=["reference", "original", "max_side"],
        default="reference",
        help="reference: 256 if smaller else floor to /32 (AnimeGAN test.py); original: exact size; "
        "max_side: exact size, capped by --max-side",
    )
    p.add_argument(
        "--max-side", type=int, help="downscale so the longer side is at most this (reference, max_side)"
    )
    p.add_argument("--format", default="png", help="png (default), jpeg or webp")
    p.add_argument("--quality", type=int, default=95, help="jpeg/webp quality 1-100 (100 = lossless webp)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="auto: bf16 where the CPU/GPU runs it fast, else fp32 (the reference path)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the generator (pays off for many same-size images)",
    )
    p.add_argument("--tile", type=int, default=1024, help="tile images larger than this side (0: never tile)")
    p.add_argument("--tile-overlap", type=int, default=64, help="overlap of neighbouring tiles in pixels")
    p.add_argument(
        "--batch-size", type=int, help="same-size images per forward pass (default: 1 on CPU, 8 on CUDA)"
    )
    p.add_argument("--drop-alpha", action="store_true", help="write RGB even for inputs with transparency")
    p.add_argument(
        "--no-faces",
        action="store_true",
        help="skip the portrait path (faces found are stylized again, enlarged, and blended back)",
    )
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger inputs")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument(
        "--untrained-demo",
        action="store_true",
        help="no weights: use a seeded random v2 generator; outputs are named *.untrained-demo.*",
    )
    p.set_defaults(func=run)


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, not recursive).

    A missing or unreadable file among others is reported and skipped when it is read; when no input exists
    at all (a mistyped folder), that is an error before the model loads, not "0 of 1 images (1 skipped)".
    """
    if not any(p.exists() for p in inputs):
        raise ConfigError(f"no such file or folder: {', '.join(map(str, inputs))}")
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        else:
            files.append(path)
    return files


def _load_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, str]:
    if args.model is not None and args.untrained_demo:
        raise ConfigError("give either --model or --untrained-demo, not both")
    if args.model is not None:
        from animegan.weights import load_inference_model

        model, _ = load_inference_model(args.model, device=device)
        return model, ""
    if not args.untrained_demo:
        raise ConfigError(NO_MODEL_HELP)
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator

    logger.warning(
        "UNTRAINED DEMO: a seeded random generator, not a trained style; outputs are named *%s.*", DEMO_SUFFIX
    )
    torch.manual_seed(0)
    return build_generator(GeneratorConfig(arch="v2")), DEMO_SUFFIX


def _output_path(out_dir: Path, source: Path, suffix: str, ext: str, used: set[Path]) -> Path:
    """out_dir/<stem><suffix>.<ext>; a later input with the same stem gets _2, _3 ... (never overwrites this run)."""
    candidate = out_dir / f"{source.stem}{suffix}.{ext}"
    n = 2
    while candidate in used:
        candidate = out_dir / f"{source.stem}_{n}{suffix}.{ext}"
        n += 1
    used.add(candidate)
    return candidate


def run(args: argparse.Namespace) -> int:
    # Torch loads here, not at import: building the parser (`animegan serve` on an API host) stays light.
    import torch
    from tqdm import tqdm

    from animegan.inference import InferenceOptions, Stylizer

    fmt = normalize_format(args.format)
    options = InferenceOptions(
        size_mode=args.size_mode,
        max_side=args.max_side,
        precision=args.precision,
        compile=args.compile,
        tile_size=args.tile or None,
        tile_overlap=args.tile_overlap,
        keep_alpha=not args.drop_alpha,
        batch_size=args.batch_size,
        faces=not args.no_faces,
    )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    files = collect_inputs(args.inputs)
    if not files:
        raise ConfigError(
            f"no images found in {', '.join(map(str, args.inputs))} (looked for {sorted(IMAGE_SUFFIXES)})"
        )
    model, suffix = _load_model(args, device)
    stylizer = Stylizer(model, device=device, options=options)
    args.out.mkdir(parents=True, exist_ok=True)
    used: set[Path] = set()
    failed = 0
    with tqdm(total=len(files), unit="img", disable=None, file=sys.stderr) as bar:
        # Read a few images ahead so same-size ones can share a forward pass; memory stays bounded.
        read_ahead = max(8, stylizer.batch_size)
        for start in range(0, len(files), read_ahead):
            chunk, images = [], []
            for path in files[start : start + read_ahead]:
                try:
                    images.append(load_image(path, max_pixels=args.max_pixels))
                    chunk.append(path)
                except (ImageError, OSError) as exc:
                    failed += 1
                    bar.write(f"animegan: skipped {path}: {exc}", file=sys.stderr)
                    bar.update(1)
            if not images:
                continue
            for path, result in zip(chunk, stylizer.stylize_many(images), strict=True):
                target = _output_path(args.out, path, suffix, "jpg" if fmt == "jpeg" else fmt, used)
                try:
                    target.write_bytes(encode_image(result, fmt, quality=args.quality))
                except (AnimeGANError, OSError) as exc:
                    failed += 1
                    bar.write(f"animegan: could not write {target}: {exc}", file=sys.stderr)
                bar.update(1)
    done = len(files) - failed
    print(
        f"stylized {done} of {len(files)} images into {args.out}"
        + (f" ({failed} skipped)" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0
