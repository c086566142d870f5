"""Draw the project's own sample photos (samples/*.jpg) procedurally, so they are free to redistribute.

Landscape-like scenes (sky gradient, sun, layered hills, a lake, trees) with texture noise, seeded:
`python scripts/make_samples.py` rewrites the same files byte for byte.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
WIDTH, HEIGHT = 640, 448

# (file name, seed, sky top RGB, sky horizon RGB, hill RGB, sun RGB)
SCENES = [
    ("meadow.jpg", 1, (70, 130, 210), (200, 225, 245), (70, 140, 60), (255, 240, 190)),
    ("sunset.jpg", 2, (60, 40, 110), (250, 150, 80), (60, 50, 70), (255, 200, 120)),
    ("lake.jpg", 3, (90, 150, 220), (220, 235, 250), (50, 110, 80), (255, 250, 220)),
    ("autumn.jpg", 4, (120, 160, 200), (230, 220, 200), (170, 90, 40), (255, 235, 200)),
]


def vertical_gradient(top: tuple[int, ...], bottom: tuple[int, ...], height: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height)[:, None, None]  # (H, 1, 1)
    rows = (1 - t) * np.array(top, float) + t * np.array(bottom, float)  # (H, 1, 3)
    return np.repeat(rows, width, axis=1)  # (H, W, 3)


def draw_scene(seed: int, sky_top, sky_low, hill, sun) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = vertical_gradient(sky_top, sky_low, HEIGHT, WIDTH)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    sx, sy, r = rng.integers(80, WIDTH - 80), rng.integers(50, HEIGHT // 3), rng.integers(25, 45)
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=sun)
    xs = np.arange(WIDTH + 1)
    for layer in range(3):
        # Far hills lighter and higher, near ones darker and lower: a cheap sense of depth.
        base = HEIGHT * (0.45 + 0.12 * layer)
        phase, freq = rng.uniform(0, 6.28), rng.uniform(0.006, 0.015)
        ridge = base - 30 * np.sin(xs * freq + phase) - 12 * np.sin(xs * freq * 3.1 + 2 * phase)
        shade = 1.25 - 0.2 * layer
        color = tuple(int(min(255, c * shade)) for c in hill)
        draw.polygon(
            [(0, HEIGHT), *zip(xs.tolist(), ridge.tolist(), strict=True), (WIDTH, HEIGHT)], fill=color
        )
        for _ in range(6 + 4 * layer):
            tx = int(rng.integers(0, WIDTH))
            ty = int(ridge[tx]) + int(rng.integers(0, 20))
            size = 8 + 6 * layer
            draw.polygon(
                [(tx, ty - 3 * size), (tx - size, ty), (tx + size, ty)], fill=(30, 70 + 10 * layer, 40)
            )
            draw.rectangle((tx - 2, ty, tx + 2, ty + size // 2), fill=(80, 50, 30))
    lake_top = int(HEIGHT * 0.82)
    draw.rectangle((0, lake_top, WIDTH, HEIGHT), fill=tuple(int(c * 0.8) for c in sky_low))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES, help="folder to write into (default: samples/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, seed, *colors in SCENES:
        draw_scene(seed, *colors).save(args.out / name, quality=88)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
