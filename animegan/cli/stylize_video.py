"""`animegan stylize-video IN --model FILE --out OUT.mp4`: stylize every frame of a clip, keep its audio."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from animegan.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stylize-video", help="stylize a video clip (H.264 MP4 out)", description=__doc__
    )
    p.add_argument("input", type=Path, metavar="IN", help="a video file (MP4, MOV, MKV, WebM ...)")
    p.add_argument(
        "--model", type=Path, help="weights: our .safetensors export, a checkpoint or a bryandlee .pt"
    )
    p.add_argument("--untrained-demo", action="store_true", help="no weights: a seeded random v2 generator")
    p.add_argument("--out", type=Path, required=True, help="the MP4 to write")
    p.add_argument(
        "--size-mode",
        choices=["reference", "original", "max_side"],
        default="original",
        help="original (default): the clip's size; reference: AnimeGAN test.py sizing; max_side: capped",
    )
    p.add_argument("--max-side", type=int, help="downscale so the longer side is at most this")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality 0-51, lower is better (default 18)")
    p.add_argument("--preset", default="medium", help="x264 preset (ultrafast ... veryslow; default medium)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator (one frame size)")
    p.add_argument("--batch-size", type=int, help="frames per forward pass (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--no-audio", action="store_true", help="leave the source's audio out")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from animegan.cli.stylize import _load_model
    from animegan.inference import InferenceOptions, Stylizer
    from animegan.video import EncodeOptions, probe_video, stylize_video

    if not args.input.is_file():
        raise ConfigError(f"no such video file: {args.input}")
    encode = EncodeOptions(crf=args.crf, preset=args.preset)
    options = InferenceOptions(
        size_mode=args.size_mode,
        max_side=args.max_side,
        precision=args.precision,
        compile=args.compile,
        batch_size=args.batch_size,
        keep_alpha=False,
        faces=False,  # a face pass per frame would flicker as detections come and go
    )
    info = probe_video(args.input)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, _ = _load_model(args, device)
    stylizer = Stylizer(model, device=device, options=options)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=info.frames, unit="frame", disable=None, file=sys.stderr) as bar:
        result = stylize_video(
            args.input,
            args.out,
            stylizer,
            encode=encode,
            audio=not args.no_audio,
            progress=lambda done: bar.update(done - bar.n),
        )
    print(
        f"stylized {result.frames} frames ({result.width}x{result.height}, {info.fps:.3g} fps"
        f"{', audio copied' if result.audio else ''}) into {args.out}",
        file=sys.stderr,
    )
    return 0
