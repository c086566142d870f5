"""Paired and teacher-distillation training on tiny seeded models: pairing by name and size rule, bad pairs
named, the loss falls, exact resume, no VGG file needed; and the PSNR/SSIM metrics they are judged by."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.cli import main as cli_main
from animegan.data.paired import CropDataset, load_pairs
from animegan.errors import ConfigError, DatasetError
from animegan.metrics import psnr_uint8, ssim, ssim_uint8
from animegan.training import TrainConfig, Trainer
from animegan.weights import load_generator, save_generator
from tests.animegan.test_trainer import assert_same_state

SIZE = 32


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def scene(rng, h, w):
    """A photo-like image: a smooth gradient with a few flat rectangles (edges for SSIM to care about)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], axis=-1)
    for _ in range(3):
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def stylized(img):
    """The 'artist': a fixed colour transform and posterisation, so a target is a function of its photo."""
    out = img.astype(np.float32) @ np.array([[0.7, 0.1, 0.2], [0.1, 0.8, 0.1], [0.3, 0.1, 0.4]], np.float32)
    return ((out // 32) * 32 + 16).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """3 pairs: two targets at the photo's size, one (photo_c, 300x270 photo) at its reference size 288x256."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for name, (h, w) in {"photo_a": (48, 56), "photo_b": (40, 40), "photo_c": (270, 300)}.items():
        photo = scene(rng, h, w)
        target = stylized(photo)
        if name == "photo_c":
            target = np.asarray(Image.fromarray(target).resize((288, 256), Image.Resampling.BILINEAR))
        write(root / "photos" / f"{name}.jpg", photo)
        write(root / "targets" / f"{name}.png", target)
    return root


def paired_config(preset="paired", **overrides):
    values = dict(
        image_size=SIZE,
        batch_size=2,
        epochs=4,
        init_epochs=1,
        generator={"base_channels": 8},
        discriminator={"base_channels": 8},
        device="cpu",
        precision="fp32",  # the reference path: exact on every CPU (bf16 is emulated on AVX2-only ones)
        checkpoint_every=100,
        sample_every=0,
        num_samples=2,
        seed=0,
    )
    values.update(overrides)
    return TrainConfig.from_preset(preset, **values)


def test_pairs_match_by_name_and_align_a_reference_sized_target(pairs):
    data = load_pairs(pairs / "photos", pairs / "targets")
    assert data.names == ["photo_a", "photo_b", "photo_c"]
    shapes = [(p.shape, t.shape) for p, t in zip(data.photos, data.targets, strict=True)]
    assert shapes == [((48, 56, 3),) * 2, ((40, 40, 3),) * 2, ((256, 288, 3),) * 2]
    # Same crop window and flip of photo and target: the target is still the 'artist's' function of the crop.
    crops = CropDataset(data, image_size=SIZE, batch_size=3, seed=1)
    batch = crops.next_batch()
    assert batch.photo.shape == batch.target.shape == (3, 3, SIZE, SIZE)
    photo = ((batch.photo[0].permute(1, 2, 0) + 1) * 127.5).round().numpy().astype(np.uint8)
    target = ((batch.target[0].permute(1, 2, 0) + 1) * 127.5).round().numpy().astype(np.uint8)
    if crops.stream.order[0] != 2:  # the resized pair's JPEG + resize noise blurs the posterisation
        assert np.abs(stylized(photo).astype(int) - target.astype(int)).mean() < 12


def test_bad_pairs_are_all_named_in_one_error(pairs, tmp_path):
    for kind in ("photos", "targets"):
        for path in (pairs / kind).iterdir():
            (tmp_path / kind).mkdir(exist_ok=True)
            (tmp_path / kind / path.name).write_bytes(path.read_bytes())
    write(tmp_path / "photos" / "lonely.png", np.zeros((40, 40, 3), np.uint8))  # no target
    write(tmp_path / "targets" / "orphan.png", np.zeros((40, 40, 3), np.uint8))  # no photo
    write(tmp_path / "targets" / "photo_a.png", np.zeros((30, 30, 3), np.uint8))  # wrong size
    (tmp_path / "targets" / "photo_b.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError) as info:
        load_pairs(tmp_path / "photos", tmp_path / "targets")
    message = str(info.value)
    assert "4 problem(s)" in message
    for expected in (
        "lonely.png has no target",
        "orphan.png has no photo",
        "photo_a: target is 30x30",
        "photo_b.png",
    ):
        assert expected in message


def test_metrics_match_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr_uint8(a, a) == float("inf") and ssim_uint8(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr_uint8(a, b) == pytest.approx(10 * np.log10(255**2 / mse))
    # Two flat images: SSIM reduces to its luminance term (2ab + C1) / (a^2 + b^2 + C1).
    x, y = (
        torch.full((1, 1, 16, 16), 100.0, dtype=torch.float64),
        torch.full((1, 1, 16, 16), 150.0, dtype=torch.float64),
    )
    c1 = (0.01 * 255) ** 2
    assert float(ssim(x, y, 255.0)) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    noisy = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    # The uint8 (OpenCV) and the torch (loss) versions are one formula.
    as_tensor = [torch.from_numpy(i).permute(2, 0, 1)[None].double() for i in (a, noisy)]
    assert ssim_uint8(a, noisy) == pytest.approx(float(ssim(*as_tensor, 255.0)), abs=1e-9)
    assert ssim_uint8(a, noisy) < ssim_uint8(a, b) < 1.0


def test_paired_steps_lower_the_loss_on_a_fixed_batch_without_vgg(pairs, tmp_path):
    cfg = paired_config(
        precision="fp32", init_epochs=0, paired_losses={"pixel": 1.0, "ssim": 1.0, "adv": 0.1}
    )
    assert cfg.vgg_weights == "" and not cfg.needs_vgg
    trainer = Trainer(cfg, pairs / "photos", None, tmp_path / "run", targets=pairs / "targets")
    fixed = trainer.data.next_batch()
    trainer.data.next_batch = lambda: fixed  # the same batch every step: the loss must fall
    first = trainer.train_step()
    assert {"g_pixel", "g_ssim", "g_adv", "g_total", "d_real", "d_fake", "d_total"} <= set(first)
    for _ in range(15):
        last = trainer.train_step()
    assert last["g_pixel"] < 0.8 * first["g_pixel"]


def test_paired_resume_is_exact_and_samples_show_targets(pairs, tmp_path):
    cfg = paired_config(sample_every=3, paired_losses={"adv": 0.1})
    straight = Trainer(cfg, pairs / "photos", None, tmp_path / "straight", targets=pairs / "targets")
    assert (straight.total_steps, straight.init_steps) == (4, 1)
    seen = []
    straight.progress = seen.append
    assert straight.run().status == "completed"
    assert [p.phase for p in seen] == ["init", "main", "main", "main"]
    assert set(seen[0].losses) == {"init_reconstruction", "init_total"}
    grid = Image.open(tmp_path / "straight" / "samples" / "step-000003.png")
    assert grid.size == (2 * SIZE, 3 * SIZE)  # photo, output and target rows

    first = Trainer(cfg, pairs / "photos", None, tmp_path / "resumed", targets=pairs / "targets")
    assert first.run(max_steps=2).status == "paused"
    second = Trainer(cfg, pairs / "photos", None, tmp_path / "resumed", targets=pairs / "targets")
    assert second.step == 2 and second.run().status == "completed"
    assert_same_state(straight, second)


def test_modes_name_what_they_miss(pairs, tmp_path):
    with pytest.raises(ConfigError, match="paired mode needs targets"):
        Trainer(paired_config(), pairs / "photos", None, tmp_path / "a")
    with pytest.raises(ConfigError, match="distill mode needs TrainConfig.teacher"):
        Trainer(paired_config(preset="distill"), pairs / "photos", None, tmp_path / "b")
    with pytest.raises(ConfigError, match="perceptual loss term needs a local VGG19"):
        Trainer(
            paired_config(paired_losses={"perceptual": 1.0}),
            pairs / "photos",
            None,
            tmp_path / "c",
            targets=pairs / "targets",
        )
    with pytest.raises(ConfigError, match="unpaired mode needs a local VGG19"):
        Trainer(TrainConfig(), pairs / "photos", pairs / "targets", tmp_path / "d")


def test_teacher_mode_student_learns_the_teachers_outputs(pairs, tmp_path):
    torch.manual_seed(3)
    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator

    teacher_file = save_generator(
        tmp_path / "teacher.safetensors", build_generator(GeneratorConfig(base_channels=16))
    )
    cfg = paired_config(
        preset="distill", teacher=str(teacher_file), epochs=40, init_epochs=0, precision="fp32"
    )
    student = Trainer(cfg, pairs / "photos", None, tmp_path / "run")
    assert student.generator.config.base_channels == 8 and student.init_steps == 0
    fixed = student.data.next_batch()
    student.data.next_batch = lambda: fixed
    losses = [student.train_step()["g_pixel"] for _ in range(20)]
    assert losses[-1] < 0.7 * losses[0]
    # Its targets are the teacher's outputs for the same crops.
    expected = load_generator(teacher_file).model(fixed.photo).clamp(-1, 1)
    assert torch.allclose(student.mode.teacher_targets(fixed.photo), expected, atol=1e-5)


def test_cli_paired_dry_run_and_training(pairs, tmp_path, capsys):
    common = ["train", "--paired", "--photos", str(pairs / "photos"), "--targets", str(pairs / "targets")]
    common += ["--run-dir", str(tmp_path / "run"), "--image-size", str(SIZE), "--batch-size", "2"]
    common += ["--base-channels", "8", "--set", "discriminator.base_channels=8", "--steps", "3"]
    assert cli_main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "inputs ok (paired): 3 photo/target pairs" in out
    assert json.loads(out[: out.rindex("}") + 1])["mode"] == "paired"
    assert cli_main(common) == 0
    assert "completed at step 3/3" in capsys.readouterr().out
    assert (
        cli_main(["train", "--paired", "--photos", str(pairs / "photos"), "--run-dir", str(tmp_path / "x")])
        == 2
    )
    assert "give --targets" in capsys.readouterr().err


def test_differentiable_blackhat_and_chroma_statistics_match_their_definitions():
    import cv2

    from animegan.losses import chroma_statistics, color_stats_loss, luma_blackhat, outline_loss

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    y = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)
    expected = cv2.morphologyEx(y, cv2.MORPH_BLACKHAT, np.ones((5, 5), np.uint8))
    got = luma_blackhat(x)[0, 0].numpy()
    inner = (slice(4, -4), slice(4, -4))  # the borders differ: replicate padding here, OpenCV's own there
    np.testing.assert_allclose(got[inner], expected[inner], atol=1e-3)

    rg = rgb[..., 0].astype(float) - rgb[..., 1]
    yb = (rgb[..., 0].astype(float) + rgb[..., 1]) / 2 - rgb[..., 2]
    stats = chroma_statistics(x)[0].double().numpy()
    np.testing.assert_allclose(stats, [rg.mean(), yb.mean(), rg.std(ddof=1), yb.std(ddof=1)], rtol=1e-4)

    fake = x.clone().requires_grad_(True)
    assert color_stats_loss(x, fake).item() == 0 and outline_loss(x, fake).item() == 0
    pale = (x * 0.5).requires_grad_(True)
    (color_stats_loss(x, pale) + outline_loss(x, pale)).backward()
    assert pale.grad.abs().sum() > 0


def test_outline_excess_costs_a_line_the_target_lacks_and_not_one_the_output_lacks():
    from animegan.losses import outline_excess_loss

    flat = torch.zeros(1, 3, 16, 16)  # mid-grey (0 in [-1, 1]: 127.5 on 0..255)
    lined = flat.clone()
    lined[:, :, 8, :] = -1  # one dark row: 127.5 levels below its neighbours
    # The black-hat of the lined image is 127.5 on its row and 0 elsewhere: mean 127.5 / 16, then / 10.
    assert outline_excess_loss(flat, lined).item() == pytest.approx(127.5 / 16 / 10, rel=1e-4)
    assert outline_excess_loss(lined, flat).item() == 0  # a line left out costs nothing here
    assert outline_excess_loss(lined, lined).item() == 0


def test_paired_discriminator_terms_edge_negatives_and_feature_matching():
    from animegan.config import PairedLossWeights
    from animegan.losses import PairedLoss

    loss = PairedLoss(PairedLossWeights(adv=1.0, d_smooth=0.5, feature_matching=2.0))
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    d = loss.discriminator(ones, zeros, ones)  # targets right, fakes right, smoothed targets all wrong
    assert d["real"] == 0 and d["fake"] == 0 and d["smooth"] == 1 and d["total"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="smoothed targets"):
        loss.discriminator(ones, zeros)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match="D's features"):
        loss.generator(x, x, zeros)
    features = ([torch.ones(2, 4, 8, 8)], [torch.zeros(2, 4, 8, 8, requires_grad=True)])
    g = loss.generator(x, x, ones, features)
    assert g["adv"] == 0 and g["feature_matching"] == 1
    assert g["total"].item() == pytest.approx(2.0 + g["pixel"].item() + g["ssim"].item())


def full_recipe(**overrides):
    losses = {"adv": 1.0, "d_smooth": 1.0, "feature_matching": 1.0, "color_stats": 1.0, "outline": 1.0}
    return paired_config(
        paired_losses=losses,
        d_augment="color,translation,cutout",
        lr_schedule="cosine",
        lr_warmup_steps=1,
        lr_final_ratio=0.1,
        **overrides,
    )


def test_the_full_paired_recipe_trains_every_term_and_resumes_exactly(pairs, tmp_path):
    cfg = full_recipe()
    straight = Trainer(cfg, pairs / "photos", None, tmp_path / "straight", targets=pairs / "targets")
    seen = []
    straight.progress = seen.append
    assert straight.run().status == "completed"
    main = seen[-1].losses
    for term in ("adv", "feature_matching", "color_stats", "outline", "pixel", "ssim"):
        assert f"g_{term}" in main, main
    assert {"d_real", "d_fake", "d_smooth"} <= set(main) and all(np.isfinite(list(main.values())))

    first = Trainer(cfg, pairs / "photos", None, tmp_path / "resumed", targets=pairs / "targets")
    assert first.run(max_steps=2).status == "paused"
    second = Trainer(cfg, pairs / "photos", None, tmp_path / "resumed", targets=pairs / "targets")
    assert second.run().status == "completed"
    assert_same_state(straight, second)  # augmentation draws and smoothed crops resume with the run


def test_distill_refuses_edge_negatives_it_cannot_make(pairs, tmp_path):
    with pytest.raises(ConfigError, match="d_smooth needs fixed targets"):
        Trainer(
            paired_config(
                preset="distill", teacher="t.safetensors", paired_losses={"adv": 1.0, "d_smooth": 1.0}
            ),
            pairs / "photos",
            None,
            tmp_path,
        )


def test_learning_rate_schedules_warm_up_then_decay_to_the_final_ratio(pairs, tmp_path):
    cfg = paired_config(lr_schedule="cosine", lr_warmup_steps=2, lr_final_ratio=0.1)
    # Main phase from step 10 to 20: warm-up over steps 10, 11; cosine over 12..19; floor at the last step.
    assert [cfg.lr_factor(s, 10, 20) for s in (10, 11, 12)] == [0.5, 1.0, 1.0]
    assert cfg.lr_factor(19, 10, 20) == pytest.approx(0.1)
    assert cfg.lr_factor(15.5, 10, 20) == pytest.approx(0.55)  # half way: the mean of 1 and 0.1
    linear = paired_config(lr_schedule="linear")
    assert linear.lr_factor(5, 0, 11) == pytest.approx(0.5)
    assert paired_config().lr_factor(7, 0, 11) == 1.0  # constant
    with pytest.raises(ConfigError, match="lr_schedule"):
        paired_config(lr_schedule="step")

    trainer = Trainer(
        paired_config(lr_schedule="linear", g_lr=1e-3, d_lr=2e-3, paired_losses={"adv": 0.1}),
        pairs / "photos",
        None,
        tmp_path,
        targets=pairs / "targets",
    )
    rates = []
    trainer.progress = lambda p: rates.append(
        (trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"])
    )
    trainer.run()
    # 1 init step (the warm-up optimiser), then steps 1..3 of the main phase decaying linearly to 0.
    assert rates[1:] == [pytest.approx((1e-3 * f, 2e-3 * f)) for f in (1.0, 0.5, 0.0)]
