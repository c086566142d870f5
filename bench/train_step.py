"""Seconds per AnimeGAN training step (GAN phase: one D step + one G step), fp32 against bf16 autocast.

Both trainers run in one process with their steps interleaved, so load from other processes hits both alike.
Usage: .venv/bin/python bench/train_step.py [--steps 3] [--size 256] [--batch 4] [--device auto]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animegan.hardware import bf16_is_native
from animegan.training import TrainConfig, Trainer
from animegan.training.trainer import resolve_device

logger = logging.getLogger(__name__)


def write_random_vgg(path: Path, seed: int = 0) -> Path:
    """A machrisaa-format vgg19.npy with random weights up to conv4_4: timing needs shapes, not real weights."""
    rng = np.random.default_rng(seed)
    widths = {"conv1": (64, 2), "conv2": (128, 2), "conv3": (256, 4), "conv4": (512, 4)}
    weights, cin = {}, 3
    for block, (cout, n) in widths.items():
        for i in range(1, n + 1):
            w = rng.normal(0, (2 / (9 * cin)) ** 0.5, (3, 3, cin, cout)).astype(np.float32)
            weights[f"{block}_{i}"] = [w, np.zeros(cout, np.float32)]
            cin = cout
    np.save(path, np.array(weights, dtype=object), allow_pickle=True)
    return path


def write_images(folder: Path, count: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def time_steps(trainer: Trainer, device: torch.device) -> float:
    start = time.perf_counter()
    trainer.train_step()
    trainer.step += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after 1 warm-up)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--preset", default="v2-hayao")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--channels-last", choices=("on", "off", "both"), default="on", help="memory format(s) to time"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    layouts = {"on": [True], "off": [False], "both": [False, True]}[args.channels_last]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vgg = write_random_vgg(root / "vgg19.npy")
        photos = write_images(root / "photos", args.batch, args.size, seed=1)
        styles = write_images(root / "styles", args.batch, args.size, seed=2)
        trainers = {}
        # bf16 only where it is native: emulated (an AVX2-only CPU), one bf16 step takes minutes
        precisions = ("fp32", "bf16") if bf16_is_native(resolve_device(args.device)) else ("fp32",)
        if len(precisions) == 1:
            print("bf16 skipped: this CPU has neither AMX nor AVX512-BF16 (torch emulates bf16 there)")
        for channels_last in layouts:
            for precision in precisions:
                cfg = TrainConfig.from_preset(
                    args.preset,
                    image_size=args.size,
                    batch_size=args.batch,
                    vgg_weights=str(vgg),
                    device=args.device,
                    precision=precision,
                    channels_last=channels_last,
                    skip_init=True,
                    epochs=1000,
                    checkpoint_every=10**9,
                    sample_every=0,
                )
                name = f"{precision} {'NHWC' if channels_last else 'NCHW'}"
                trainers[name] = Trainer(cfg, photos, styles, root / name.replace(" ", "-"))
        device = next(iter(trainers.values())).device
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for i in range(args.steps + 1):  # step 0 of each is a warm-up (allocator, oneDNN/cuDNN kernels)
            for name, trainer in trainers.items():
                seconds = time_steps(trainer, device)
                if i > 0:
                    times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, preset {args.preset}, "
        f"batch {args.batch}, {args.size} px, {args.steps} timed GAN steps each (median)"
    )
    for name, t in times.items():
        print(f"{name}: {median[name]:.2f} s/step  (all: {', '.join(f'{x:.2f}' for x in t)})")
    for layout in ("NCHW", "NHWC"):
        if f"bf16 {layout}" in median:
            print(f"bf16 speed-up ({layout}): {median[f'fp32 {layout}'] / median[f'bf16 {layout}']:.2f}x")
    if len(layouts) == 2 and "bf16 NHWC" in median:
        print(f"bf16 NHWC vs fp32 NCHW: {median['fp32 NCHW'] / median['bf16 NHWC']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
