"""README.md kept true: its settings table is current, its names are real, and its tagged examples run as written.

A fenced bash block preceded by `<!-- readme-test: cli -->` runs in a scratch folder with small fixture files;
`<!-- readme-test: http -->` blocks run in order, in one shell, against a real API and worker started here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
README = PROJECT_ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
# Variables the README may name that no settings class reads: the test fixtures' own (tests/conftest.py).
TEST_ONLY_NAMES = {"ANIMEGAN_TEST_REDIS_DB", "ANIMEGAN_TEST_REDIS_HOST", "ANIMEGAN_TEST_REDIS_PORT"}


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme() -> str:
    return README.read_text(encoding="utf-8")


def tagged_blocks(tag: str) -> list[str]:
    pattern = rf"<!-- readme-test: {tag} -->\s*```bash\n(.*?)```"
    return re.findall(pattern, readme(), flags=re.S)


def run_bash(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shell_env(**extra: str) -> dict[str, str]:
    """The environment a reader has after `source .venv/bin/activate`: the venv's commands first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_") or k in TEST_ONLY_NAMES}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_settings_table_is_generated_from_the_settings_classes():
    table = load_module(PROJECT_ROOT / "scripts" / "settings_table.py").markdown()
    match = re.search(
        r"<!-- settings-table:begin -->\n(.*?)<!-- settings-table:end -->", readme(), flags=re.S
    )
    assert match, "README.md lost its settings-table markers"
    assert match.group(1) == table, "README settings table is stale: run `make settings-table` and paste it"


def test_every_animegan_name_in_readme_is_a_setting_and_every_setting_is_listed():
    from api.settings import ApiSettings, ClientSettings
    from workers.settings import WorkerSettings

    fields = {*WorkerSettings.model_fields, *ApiSettings.model_fields, *ClientSettings.model_fields}
    settings = {f"ANIMEGAN_{name.upper()}" for name in fields}
    named = set(re.findall(r"\bANIMEGAN_[A-Z0-9_]+", readme()))
    assert not named - settings - TEST_ONLY_NAMES, f"README names unknown settings {sorted(named - settings)}"
    assert not settings - named, f"README does not list {sorted(settings - named)}"


def test_quick_start_commands_are_wired():
    quick = re.search(r"## Quick start.*?```bash\n(.*?)```", readme(), flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.strip()]
    assert commands == ["./deploy/local/run.sh", "make test"]
    assert os.access(PROJECT_ROOT / "deploy" / "local" / "run.sh", os.X_OK)
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "set -euo pipefail" in ci, (
        ".ci/run must run exactly `make test` and fail loudly"
    )
    for target in ("demo", "test"):
        proc = subprocess.run(["make", "-n", target], cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"make {target}: {proc.stderr}"
    env = {**os.environ, "VENV": sys.prefix}
    proc = subprocess.run(
        ["bash", "deploy/local/run.sh", "--help"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--weights" in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def cli_workspace(tmp_path_factory) -> Path:
    """What the README's library examples expect in the current folder: photos, a big photo, weights files."""
    import torch
    from PIL import Image

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    root = tmp_path_factory.mktemp("readme-cli")
    (root / "photos").mkdir()
    for name in ("meadow", "lake"):
        Image.open(PROJECT_ROOT / "samples" / f"{name}.jpg").resize((64, 48)).save(
            root / "photos" / f"{name}.jpg"
        )
    Image.open(PROJECT_ROOT / "samples" / "sunset.jpg").resize((160, 112)).save(root / "big.jpg")
    torch.manual_seed(0)
    save_generator(root / "paprika.safetensors", build_generator(GeneratorConfig(arch="v2", base_channels=8)))
    # A file in the public port's format: a plain state dict of the full-size v2 generator (same keys/shapes).
    torch.manual_seed(1)
    port = build_generator(GeneratorConfig(arch="v2", upsample="align_corners"))
    torch.save(port.state_dict(), root / "paprika.pt")
    return root


def test_cli_examples_run_as_written(cli_workspace):
    blocks = tagged_blocks("cli")
    assert blocks, "README has no `readme-test: cli` blocks"
    for block in blocks:
        proc = run_bash(block, cli_workspace, shell_env(), timeout=300)
        assert proc.returncode == 0, f"README block failed:\n{block}\n--- stderr:\n{proc.stderr[-3000:]}"
    outputs = list((cli_workspace / "out").iterdir())
    assert len(outputs) >= 3, f"stylize examples wrote {outputs}"
