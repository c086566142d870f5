"""The `animegan` CLI end to end through main([...]) and once through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bl_reference import random_state_dict
from PIL import Image
from test_stylizer import photo

from animegan import __version__
from animegan.cli import main


@pytest.fixture
def port_weights(tmp_path) -> Path:
    path = tmp_path / "paprika.pt"
    torch.save(random_state_dict(width=8, seed=1), path)
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    photo(70, 45, seed=1).save(folder / "a.jpg", quality=95)
    photo(70, 45, seed=2).save(folder / "b.png")
    photo(33, 21, seed=3, mode="RGBA").save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image, and not an image suffix either")
    return folder


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"animegan {__version__}"


def test_stylize_of_a_missing_folder_is_an_error_naming_it(tmp_path, capsys):
    # It used to answer "stylized 0 of 1 images (1 skipped)", as if the folder were an unreadable image.
    missing = tmp_path / "photos"
    assert main(["stylize", f"{missing}/", "--untrained-demo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no such file or folder: {missing}" in err and "skipped" not in err
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(capsys):
    assert main(["stylize"]) == 2
    assert main(["no-such-command"]) == 2
    assert main([]) == 2


def test_import_info_stylize(tmp_path, port_weights, inputs, capsys):
    export = tmp_path / "paprika.safetensors"
    assert main(["import-weights", str(port_weights), str(export), "--name", "paprika-test"]) == 0
    assert "align_corners" in capsys.readouterr().out
    assert main(["import-weights", str(port_weights), str(export)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err

    assert main(["info", str(export), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == "v2" and info["metadata"]["name"] == "paprika-test" and info["tensors"] == 77
    assert main(["info", str(export)]) == 0
    text = capsys.readouterr().out
    assert "format:  safetensors export" in text
    # arch is a config field and a metadata key too; it was printed twice.
    assert [line for line in text.splitlines() if "arch" in line] == ["arch:    v2"], text

    out = tmp_path / "out"
    args = ["stylize", str(inputs), "--model", str(export), "--out", str(out), "--size-mode", "original"]
    assert main([*args, "--precision", "fp32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert Image.open(out / "a.png").size == (70, 45)
    assert Image.open(out / "c.png").mode == "RGBA"
    assert "stylized 3 of 3" in capsys.readouterr().err


def test_stylize_options_formats_and_tiling(tmp_path, port_weights, inputs):
    out = tmp_path / "out"
    big = tmp_path / "big.png"
    photo(200, 90, seed=4).save(big)
    common = ["--model", str(port_weights), "--out", str(out), "--precision", "fp32"]
    assert (
        main(
            ["stylize", str(big), *common, "--size-mode", "original", "--tile", "64", "--tile-overlap", "16"]
        )
        == 0
    )
    assert Image.open(out / "big.png").size == (200, 90)
    assert main(["stylize", str(inputs / "c.png"), *common, "--format", "jpeg", "--drop-alpha"]) == 0
    jpeg = Image.open(out / "c.jpg")
    assert jpeg.format == "JPEG" and jpeg.size == (256, 256)  # reference mode: 256 if smaller
    assert (
        main(
            ["stylize", str(big), *common, "--size-mode", "max_side", "--max-side", "100", "--format", "webp"]
        )
        == 0
    )
    assert Image.open(out / "big.webp").size == (100, 45)


def test_unreadable_files_are_skipped_with_one_line(tmp_path, port_weights, inputs, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    args = [
        "stylize",
        str(inputs / "a.jpg"),
        str(broken),
        str(tmp_path / "missing.png"),
        str(inputs / "b.png"),
    ]
    code = main([*args, "--model", str(port_weights), "--out", str(out), "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert f"skipped {broken}" in err and "missing.png" in err and "stylized 2 of 4" in err
    assert "Traceback" not in err


def test_without_a_model_says_how_to_get_one(tmp_path, inputs, capsys):
    assert main(["stylize", str(inputs), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("animegan: error: stylize needs --model") and "import-weights" in err
    assert main(["stylize", str(inputs / "a.jpg"), "--out", str(tmp_path / "out"), "--untrained-demo"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.untrained-demo.png"]


def test_bad_weights_file_is_one_line_exit_1(tmp_path, inputs, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("animegan: error: ") and "bad.safetensors" in err
    assert main(["stylize", str(inputs), "--model", str(bad), "--out", str(tmp_path / "o")]) == 1


def test_console_script_in_a_subprocess(tmp_path, port_weights):
    script = Path(sys.executable).with_name("animegan")
    assert script.exists(), f"the console script is not installed at {script}; run pip install -e ."
    image = tmp_path / "p.png"
    photo(48, 40).save(image)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [
            str(script),
            "stylize",
            str(image),
            "--model",
            str(port_weights),
            "--out",
            str(tmp_path / "o"),
            "--size-mode",
            "original",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = np.asarray(Image.open(tmp_path / "o" / "p.png"))
    assert result.shape == (40, 48, 3) and result.std() > 0
    failed = subprocess.run([str(script), "info", str(image)], capture_output=True, text=True, timeout=300)
    assert (
        failed.returncode == 1
        and failed.stderr.startswith("animegan: error: ")
        and "Traceback" not in failed.stderr
    )
