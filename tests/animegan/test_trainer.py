"""Trainer on a tiny seeded model: both phases, checkpoints, exact resume, callbacks, export, fine-tuning, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.cli import main as cli_main
from animegan.errors import ConfigError
from animegan.training import TrainConfig, Trainer
from animegan.training.checkpoint import list_checkpoints, load_checkpoint
from animegan.weights import load_generator

SIZE = 32


@pytest.fixture(scope="module")
def vgg_file(vgg19_npy):
    """Random Caffe-format VGG19 weights (tests/animegan/conftest.py): timing and plumbing, not quality."""
    return vgg19_npy


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """2 noisy photos and 2 style images with hard-edged shapes (so edge smoothing has work to do)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for kind in ("photos", "styles"):
        (root / kind).mkdir()
        for i in range(2):
            img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            if kind == "styles":
                img[8:24, 10:30] = rng.integers(0, 256, 3, dtype=np.uint8)
            Image.fromarray(img).save(root / kind / f"{kind}{i}.png")
    return root


def tiny_config(vgg_file, **overrides):
    # 2 photos, 2 styles, batch 1 -> 2 steps per epoch; 2 epochs with 1 init epoch -> 2 init + 2 GAN steps
    values = dict(
        image_size=SIZE,
        batch_size=1,
        epochs=2,
        init_epochs=1,
        vgg_weights=str(vgg_file),
        generator={"base_channels": 8},
        discriminator={"base_channels": 8},
        device="cpu",
        precision="fp32",  # the reference path: exact on every CPU (bf16 is emulated on AVX2-only ones)
        checkpoint_every=100,
        sample_every=3,
        num_samples=2,
        seed=0,
    )
    values.update(overrides)
    return TrainConfig.from_preset("v2-hayao", **values)


def make_trainer(cfg, images, run_dir, **callbacks):
    return Trainer(cfg, images / "photos", images / "styles", run_dir, **callbacks)


def assert_same_state(a: Trainer, b: Trainer) -> None:
    for name in ("generator", "discriminator"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{name}.{key} differs"
    for name in ("opt_g", "opt_d", "opt_init"):
        for pa, pb in zip(
            getattr(a, name).state_dict()["state"].values(),
            getattr(b, name).state_dict()["state"].values(),
            strict=True,
        ):
            assert all(torch.equal(pa[k], pb[k]) for k in pa), f"{name} state differs"


def test_both_phases_checkpoint_and_resume_equal_an_uninterrupted_run(vgg_file, images, tmp_path):
    cfg = tiny_config(vgg_file)
    seen, checkpoints, samples = [], [], []
    straight = make_trainer(
        cfg,
        images,
        tmp_path / "straight",
        progress=seen.append,
        on_checkpoint=checkpoints.append,
        on_sample=samples.append,
    )
    assert (straight.total_steps, straight.init_steps) == (4, 2)
    assert json.loads((tmp_path / "straight" / "config.json").read_text()) == cfg.to_dict()  # fp32 as asked
    result = straight.run()
    assert (result.status, result.step, result.phase) == ("completed", 4, "gan")
    assert [(p.step, p.phase) for p in seen] == [(1, "init"), (2, "init"), (3, "gan"), (4, "gan")]
    assert set(seen[0].losses) == {"init_total", "init_content"}
    assert {"d_total", "g_total"} <= set(seen[-1].losses)
    assert all(np.isfinite(v) for p in seen for v in p.losses.values())
    assert checkpoints == [result.checkpoint] and result.checkpoint.name == "step-00000004.pt"
    assert [p.name for p in samples] == ["step-000003.png", "step-000004.png"]
    assert Image.open(samples[0]).size == (2 * SIZE, 2 * SIZE)  # 2 photos wide, input row over output row
    lines = [json.loads(x) for x in (tmp_path / "straight" / "losses.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]

    # Segment 1 stops inside the GAN phase after 3 steps; a new Trainer (as a new process would) resumes.
    first = make_trainer(cfg, images, tmp_path / "resumed")
    paused = first.run(max_steps=3)
    assert (paused.status, paused.step, paused.checkpoint.name) == ("paused", 3, "step-00000003.pt")
    state = torch.load(paused.checkpoint, weights_only=True)
    assert (state["step"], state["phase"], state["format_version"]) == (3, "gan", 1)
    assert TrainConfig.from_dict(state["config"]) == cfg

    second = make_trainer(cfg, images, tmp_path / "resumed")
    assert second.step == 3
    done = second.run()
    assert (done.status, done.step) == ("completed", 4)
    assert_same_state(straight, second)
    lines = [json.loads(x) for x in (tmp_path / "resumed" / "losses.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]

    # A finished run stays finished.
    assert make_trainer(cfg, images, tmp_path / "resumed").run().status == "completed"


def test_stop_pause_and_config_mismatch(vgg_file, images, tmp_path):
    cfg = tiny_config(vgg_file, checkpoint_every=1, keep_checkpoints=2)
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) > 2

    result = make_trainer(cfg, images, tmp_path, should_stop=stop_after_two).run()
    assert (result.status, result.step) == ("stopped", 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001.pt", "step-00000002.pt"]
    assert result.checkpoint.name == "step-00000002.pt"

    paused = make_trainer(cfg, images, tmp_path).run(max_seconds=0)
    assert (paused.status, paused.step) == ("paused", 2)
    assert load_checkpoint(paused.checkpoint)["step"] == 2

    with pytest.raises(ConfigError, match="seed: 0 != 5"):
        make_trainer(cfg.replace(seed=5), images, tmp_path)
    # Runtime fields (here the step budget and checkpoint interval) may change between segments.
    more = make_trainer(cfg.replace(max_total_steps=3, checkpoint_every=50), images, tmp_path).run()
    assert (more.status, more.step, more.total_steps) == ("completed", 3, 3)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002.pt", "step-00000003.pt"]

    # A cut-off newest checkpoint (say, an interrupted download) is skipped for the previous one.
    (tmp_path / "checkpoints" / "step-00000009.pt").write_bytes(b"PK\x03\x04 cut off")
    assert make_trainer(cfg.replace(max_total_steps=3), images, tmp_path).step == 3


def test_precision_auto_resolves_to_what_the_cpu_runs_natively_and_is_recorded(
    vgg_file, images, tmp_path, monkeypatch, caplog
):
    from animegan import hardware

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda native=native: native)
        run_dir = tmp_path / expected
        trainer = make_trainer(tiny_config(vgg_file, precision="auto"), images, run_dir)
        assert trainer.config.precision == expected
        assert json.loads((run_dir / "config.json").read_text())["precision"] == expected
    # An explicit bf16 where the CPU would emulate it runs as asked, with one warning that says why not.
    hardware._warn_emulated_bf16_once.cache_clear()
    with caplog.at_level("WARNING", logger="animegan.hardware"):
        for i in range(2):
            bf16 = make_trainer(tiny_config(vgg_file, precision="bf16"), images, tmp_path / f"bf16-{i}")
            assert bf16.config.precision == "bf16"
    warnings = [r for r in caplog.records if "emulates it" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert TrainConfig().precision == "auto"


def test_export_fine_tune_and_auto_precision(vgg_file, images, tmp_path):
    cfg = tiny_config(vgg_file, epochs=1, init_epochs=1, max_total_steps=1)
    trainer = make_trainer(cfg, images, tmp_path / "base")
    trainer.run()
    export = trainer.export_generator(tmp_path / "g.safetensors")
    loaded = load_generator(export)
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    trainer.generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), trainer.generator(x))
    assert loaded.metadata["step"] == 1

    tune = tiny_config(
        vgg_file,
        epochs=1,
        max_total_steps=1,
        init_generator=str(export),
        skip_init=True,
        precision="auto",
        generator={"base_channels": 16},
    )  # the file's architecture wins over this
    (tmp_path / "val").mkdir()
    Image.new("RGB", (SIZE, SIZE), (0, 128, 255)).save(tmp_path / "val" / "v.png")
    samples = []
    tuner = make_trainer(
        tune, images, tmp_path / "tune", val_photos=tmp_path / "val", on_sample=samples.append
    )
    assert tuner.config.generator == loaded.config and tuner.init_steps == 0
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(tuner.generator.state_dict()[key], value)
    seen = []
    tuner.progress = seen.append
    assert tuner.run().status == "completed"
    assert [p.phase for p in seen] == ["gan"]
    assert Image.open(samples[-1]).size == (SIZE, 2 * SIZE)  # the one val photo over its output
    assert all(np.isfinite(v) for p in seen for v in p.losses.values())


def test_cli_dry_run_train_and_rerun_resumes(vgg_file, images, tmp_path, capsys):
    run_dir = tmp_path / "run"
    common = [
        "train",
        "--preset",
        "v2-paprika",
        "--photos",
        str(images / "photos"),
        "--styles",
        str(images / "styles"),
        "--run-dir",
        str(run_dir),
        "--vgg-weights",
        str(vgg_file),
        "--image-size",
        str(SIZE),
        "--batch-size",
        "1",
        "--base-channels",
        "8",
        "--device",
        "cpu",
        "--set",
        "discriminator.base_channels=8",
        "--set",
        "losses.color=20",
        "--epochs",
        "2",
        "--init-epochs",
        "1",
    ]
    assert cli_main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    resolved = json.loads(out[: out.rindex("}") + 1])
    assert resolved["losses"]["color"] == 20 and resolved["losses"]["d_smooth"] == 0.005
    assert resolved["generator"]["base_channels"] == 8
    assert "2 photos, 2 style images; 2 steps per epoch, 4 steps in all" in out
    assert not run_dir.exists()

    assert cli_main([*common, "--steps", "1"]) == 0
    assert "completed at step 1/1" in capsys.readouterr().out
    assert cli_main([*common, "--steps", "2"]) == 0  # the same command with a bigger budget resumes
    out = capsys.readouterr().out
    assert "completed at step 2/2" in out and (run_dir / "generator.safetensors").is_file()
    assert [json.loads(x)["step"] for x in (run_dir / "losses.jsonl").read_text().splitlines()] == [1, 2]

    # A JSON config file (TrainConfig fields plus the paths) gives the same dry run; flags still override.
    config_file = tmp_path / "train.json"
    config_file.write_text(
        json.dumps(
            {
                "preset": "v1",
                "photos": str(images / "photos"),
                "styles": str(images / "styles"),
                "run_dir": str(tmp_path / "from-file"),
                "vgg_weights": str(vgg_file),
                "image_size": SIZE,
                "batch_size": 1,
                "epochs": 3,
                "losses": {"sty": 2.0},
            }
        )
    )
    assert cli_main(["train", "--config", str(config_file), "--epochs", "7", "--dry-run"]) == 0
    out = capsys.readouterr().out
    resolved = json.loads(out[: out.rindex("}") + 1])
    assert (resolved["preset"], resolved["epochs"], resolved["init_epochs"]) == ("v1", 7, 5)
    assert resolved["losses"]["sty"] == 2.0 and resolved["generator"]["arch"] == "v1"

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_text("not an image")
    code = cli_main(
        [
            "train",
            "--photos",
            str(tmp_path / "bad"),
            "--styles",
            str(images / "styles"),
            "--run-dir",
            str(tmp_path / "x"),
            "--vgg-weights",
            str(vgg_file),
            "--dry-run",
        ]
    )
    assert code != 0
    assert "broken.jpg" in capsys.readouterr().err


def test_cli_smooth_edges(images, tmp_path, capsys):
    assert (
        cli_main(["smooth-edges", str(images / "styles"), "--out", str(tmp_path / "smooth"), "--size", "32"])
        == 0
    )
    written = sorted(p.name for p in (tmp_path / "smooth").iterdir())
    assert written == ["styles0.png", "styles1.png"]
    assert Image.open(tmp_path / "smooth" / "styles0.png").size == (32, 32)
    assert "wrote 2 smoothed images" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_both_phases_and_cpu_loadable_checkpoint(vgg_file, images, tmp_path):
    cfg = tiny_config(vgg_file, device="auto", precision="bf16", max_total_steps=3)
    trainer = make_trainer(cfg, images, tmp_path)
    assert trainer.device.type == "cuda"
    seen = []
    trainer.progress = seen.append
    result = trainer.run()
    assert [p.phase for p in seen] == ["init", "init", "gan"]
    assert all(np.isfinite(v) for p in seen for v in p.losses.values())
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert state["step"] == 3 and state["generator"]["out_layer.0.weight"].device.type == "cpu"
    loaded = load_generator(trainer.export_generator(tmp_path / "g.safetensors"))
    assert loaded.config == cfg.generator


def test_v1_preset_gan_step(vgg_file, images, tmp_path):
    cfg = TrainConfig.from_preset(
        "v1",
        image_size=SIZE,
        batch_size=1,
        vgg_weights=str(vgg_file),
        generator={"base_channels": 8},
        discriminator={"base_channels": 8},
        device="cpu",
        skip_init=True,
        max_total_steps=1,
        sample_every=0,
    )
    seen = []
    result = make_trainer(cfg, images, tmp_path, progress=seen.append).run()
    assert (result.status, seen[0].phase) == ("completed", "gan")
    assert "g_tv" not in seen[0].losses  # v1 has no total-variation term
    assert all(np.isfinite(v) for v in seen[0].losses.values())
