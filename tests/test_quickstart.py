"""The two quick-start commands (`./deploy/local/run.sh`, `make test`): their errors reach the user, and each
reuses the virtualenv the other one installed, in either order.

run.sh runs here with a stand-in virtualenv (a folder whose bin/python execs this test's interpreter), so the
install stamps it reads are the test's own and nothing is installed into the real environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_DB, TEST_REDIS_HOST, TEST_REDIS_PORT

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUN_SH = PROJECT_ROOT / "deploy" / "local" / "run.sh"


def project_hash() -> str:
    """What run.sh and the Makefile stamp an install with: sha256 of pyproject.toml + constraints.txt."""
    import hashlib

    data = (PROJECT_ROOT / "pyproject.toml").read_bytes() + (PROJECT_ROOT / "constraints.txt").read_bytes()
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def stand_in_venv(tmp_path) -> Path:
    """A VENV folder whose python is this interpreter; no stamps yet."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return venv


def run_sh(venv: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")},
        "VENV": str(venv),
        # The test database: run.sh only checks that Redis answers; these cases stop before anything starts.
        "ANIMEGAN_REDIS_URL": f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{TEST_REDIS_DB}",
    }
    return subprocess.run(
        ["bash", str(RUN_SH), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weights", "/nonexistent/paprika.pt"], "--weights /nonexistent/paprika.pt: no such file"),
        (["--photos", "/nonexistent/photos"], "--photos /nonexistent/photos: not a folder"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_run_sh_errors_reach_stderr_after_the_redis_probe(stand_in_venv, args, message):
    # The Redis probe once redirected the whole script's stderr to /dev/null: these exited 1 or 2 in silence.
    (stand_in_venv / ".animegan-dev-stamp").write_text(project_hash() + "\n")
    proc = run_sh(stand_in_venv, *args)
    assert proc.returncode != 0
    assert "Redis answers" in proc.stdout, proc.stdout + proc.stderr
    assert message in proc.stderr, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_run_sh_reuses_a_venv_that_make_install_made(stand_in_venv):
    # `make test` first, then run.sh: the [dev] install already holds [api,worker]; no second pip run.
    (stand_in_venv / ".animegan-dev-stamp").write_text(project_hash() + "\n")
    proc = run_sh(stand_in_venv, "--weights", "/nonexistent/paprika.pt")
    assert "installing the project" not in proc.stdout, proc.stdout


def make_dry_run(venv: Path, target: str) -> str:
    proc = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("target", ["test", "lint"])
def test_make_test_installs_the_dev_extra_over_the_demos_venv(stand_in_venv, target):
    # run.sh first, then `make test`: the demo's venv has [api,worker] and no ruff or pytest.
    (stand_in_venv / ".animegan-install-stamp").write_text(project_hash() + "\n")
    assert 'pip install -c constraints.txt -e ".[dev]"' in make_dry_run(stand_in_venv, target)


def test_make_test_does_not_reinstall_a_current_dev_venv(stand_in_venv):
    (stand_in_venv / ".animegan-dev-stamp").write_text(project_hash() + "\n")
    commands = make_dry_run(stand_in_venv, "test")
    assert "pip install" not in commands and "pytest" in commands, commands


def test_a_failed_demo_still_says_where_the_api_runs_and_how_to_stop_it(monkeypatch, capsys, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_script", PROJECT_ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    started = []
    monkeypatch.setattr(demo, "prepare_model", lambda weights: ("tiny", False))
    monkeypatch.setattr(demo, "photo_folder", lambda requested: tmp_path)
    monkeypatch.setattr(demo, "start_process", lambda name, argv, env: started.append(name) or 4242)
    monkeypatch.setattr(demo, "read_pid", lambda name: 4242 if name in started else None)
    monkeypatch.setattr(
        demo.httpx, "get", lambda *a, **k: (_ for _ in ()).throw(demo.httpx.ConnectError("no"))
    )

    def worker_died(api_url, names, timeout):
        raise SystemExit("[demo] the worker exited with 1; its log: data/local/logs/worker.log")

    monkeypatch.setattr(demo, "wait_ready", worker_died)
    with pytest.raises(SystemExit, match="the worker exited"):
        demo.main(["--port", "8765"])
    out = capsys.readouterr().out
    assert "the API is still running at http://127.0.0.1:8765" in out
    assert "stop everything with: ./deploy/local/run.sh --stop" in out
