"""Write seeded random VGG19 weights (vgg19.npy format) for training smoke runs: `python scripts/random_vgg19.py OUT`.

Training needs VGG19 features for its losses, and nothing is downloaded here. Random weights of the real shapes
let a smoke run exercise every part of the pipeline (data, init and GAN phases, checkpoints, export), but its
losses mean nothing: a real style needs the original vgg19.npy (README, 'Training a new style').
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for tests.animegan

from tests.animegan.vgg_fixtures import write_vgg19_npy  # noqa: E402 (the tests' generator: one recipe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="file to write, e.g. vgg19-random.npy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_vgg19_npy(args.out, seed=args.seed)
    print(f"wrote random VGG19 weights to {args.out} (smoke runs only: the losses mean nothing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
