"""CUDA checks of the library (marker `gpu`; skipped where no CUDA device is present, as in CI).

They pin what the CPU suite cannot: the generator on CUDA computes what it computes on the CPU, the fast path
(bf16/fp16 autocast) stays close to fp32 there, and a run trained on a GPU resumes on a CPU-only machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.config import GeneratorConfig
from animegan.inference import InferenceOptions, Stylizer
from animegan.nn import build_generator
from animegan.training import TrainConfig, Trainer
from animegan.training.checkpoint import list_checkpoints

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _photo(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    noise = rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_cuda_fp32_matches_cpu(arch):
    torch.manual_seed(0)
    g = build_generator(GeneratorConfig(arch=arch, base_channels=8)).eval()
    image = _photo(96, 160)
    fp32 = InferenceOptions(size_mode="original", precision="fp32")
    on_cpu = Stylizer(g, device="cpu", options=fp32).stylize(image)
    on_gpu = Stylizer(g.to("cuda"), device="cuda", options=fp32).stylize(image)
    # TF32 convolutions on Hopper round differently from the CPU: a few grey levels at most, never a different image
    diff = np.abs(np.asarray(on_cpu, np.int16) - np.asarray(on_gpu, np.int16))
    assert diff.max() <= 3, f"{arch}: CUDA output differs from CPU by {diff.max()} grey levels"


@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_cuda_fast_path_close_to_fp32(arch):
    torch.manual_seed(0)
    g = build_generator(GeneratorConfig(arch=arch)).eval().to("cuda")
    image = _photo(512, 512, seed=1)
    ref = Stylizer(g, device="cuda", options=InferenceOptions(size_mode="original", precision="fp32"))
    fast = Stylizer(g, device="cuda", options=InferenceOptions(size_mode="original", precision="bf16"))
    assert _psnr(ref.stylize(image), fast.stylize(image)) >= 35.0


def test_train_on_cuda_resume_on_cpu(tmp_path, vgg19_npy):
    for kind in ("photos", "styles"):
        (tmp_path / kind).mkdir()
        for i in range(2):
            _photo(40, 48, seed=10 * i + len(kind)).save(tmp_path / kind / f"{i}.png")
    common = dict(
        image_size=32,
        batch_size=1,
        epochs=2,
        init_epochs=1,
        vgg_weights=str(vgg19_npy),
        generator={"base_channels": 8},
        discriminator={"base_channels": 8},
        checkpoint_every=100,
        seed=0,
    )
    run_dir = tmp_path / "run"
    gpu = Trainer(
        TrainConfig.from_preset("v2-hayao", device="cuda", precision="bf16", **common),
        photos=tmp_path / "photos",
        styles=tmp_path / "styles",
        run_dir=run_dir,
    )
    first = gpu.run(max_steps=3)
    assert first.status == "paused" and first.step == 3
    assert next(gpu.generator.parameters()).is_cuda
    assert list_checkpoints(run_dir), "the paused segment wrote no checkpoint"

    cpu = Trainer(
        TrainConfig.from_preset("v2-hayao", device="cpu", precision="fp32", **common),
        photos=tmp_path / "photos",
        styles=tmp_path / "styles",
        run_dir=run_dir,
    )
    assert cpu.step == 3, "the CPU trainer did not resume from the GPU checkpoint"
    done = cpu.run()
    assert done.status == "completed" and done.step == done.total_steps
    assert all(torch.isfinite(p).all() for p in cpu.generator.parameters())
