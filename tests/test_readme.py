"""README.md kept true: its settings table is current, its names are real, and its tagged examples run as written.

A fenced bash block preceded by `<!-- readme-test: cli -->` runs in a scratch folder with small fixture files;
`<!-- readme-test: http -->` blocks run in order, in one shell, against a real API and worker started here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until

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


def test_every_test_the_fault_table_names_exists():
    section = readme().split("### Faults and what they cost", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Fault")]
    named = re.findall(r"`([\w/]+\.py)::(test_\w+)`", "\n".join(rows))
    assert len(rows) >= 9 and len(named) >= len(rows), "the fault table lost rows or their tests"
    for path, name in named:
        source = (PROJECT_ROOT / "tests" / path).read_text()
        assert re.search(rf"^def {name}\(", source, flags=re.M), (
            f"the fault table names {path}::{name}, which is gone"
        )


def test_quick_start_commands_are_wired():
    quick = re.search(r"## Quick start.*?```bash\n(.*?)```", readme(), flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.strip()]
    assert commands == ["./deploy/local/run.sh", "make test"]
    assert os.access(PROJECT_ROOT / "deploy" / "local" / "run.sh", os.X_OK)
    for target in ("demo", "test"):
        proc = subprocess.run(["make", "-n", target], cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"make {target}: {proc.stderr}"
    env = {**os.environ, "VENV": sys.prefix}
    proc = subprocess.run(
        ["bash", "deploy/local/run.sh", "--help"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--weights" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_rc", [0, 2])
def test_ci_installs_then_runs_make_test_and_fails_when_it_fails(tmp_path, test_rc):
    """.ci/run, run for real with a stand-in `make` on PATH that records its arguments (and fails `make test`
    with `test_rc`): its last step is `make test`, and CI fails exactly when that fails."""
    fake_bin, calls = tmp_path / "bin", tmp_path / "make-calls"
    fake_bin.mkdir()
    (fake_bin / "make").write_text(
        f'#!/usr/bin/env bash\necho "$*" >>"{calls}"\nif [[ "$1" == test ]]; then exit {test_rc}; fi\n'
    )
    (fake_bin / "make").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env['PATH']}", VENV=str(tmp_path / "fresh-venv"))
    proc = subprocess.run(
        ["bash", ".ci/run"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    made = [line.split() for line in calls.read_text().splitlines()]
    assert made[0][0] == "install" and made[-1][0] == "test", made
    assert f"VENV={tmp_path / 'fresh-venv'}" in made[-1], "make test ran in another virtualenv"
    assert (proc.returncode == 0) == (test_rc == 0), proc.stdout + proc.stderr


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
        Image.open(PROJECT_ROOT / "samples" / f"{name}.jpg").resize((192, 128)).save(
            root / "photos" / f"{name}.jpg"
        )
    Image.open(PROJECT_ROOT / "samples" / "sunset.jpg").resize((160, 112)).save(root / "big.jpg")
    # The training examples' dataset: shorter sides of 128 px, the least a 256 px run accepts.
    for folder, names in [
        ("dataset/train_photo", ("meadow", "lake")),
        ("dataset/Hayao/style", ("sunset", "autumn")),
    ]:
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.open(PROJECT_ROOT / "samples" / f"{name}.jpg").resize((192, 128)).save(
                root / folder / f"{name}.jpg"
            )
    load_module(PROJECT_ROOT / "tests" / "animegan" / "vgg_fixtures.py").write_vgg19_npy(root / "vgg19.npy")
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
    outputs = [p.name for p in (cli_workspace / "out").iterdir()]
    assert len(outputs) >= 3, f"stylize examples wrote {outputs}"
    assert not (cli_workspace / "runs" / "hayao" / "checkpoints").exists(), "--dry-run must not train"
    assert len(list((cli_workspace / "out" / "smoke").iterdir())) == 2, (
        "the smoke-trained model stylized nothing"
    )


class WebhookReceiver:
    """A local HTTP server that records every POST (headers, body): the README's webhook receiver."""

    def __init__(self) -> None:
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/animegan"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def http_stack(tmp_path_factory, cli_workspace):
    """A real API and worker (local storage, the test Redis database) and the files the HTTP examples use."""
    import httpx
    import redis
    from PIL import Image

    # The database tests/conftest.py's redis_url fixture uses (read here: several test folders have a conftest).
    host = os.environ.get("ANIMEGAN_TEST_REDIS_HOST", "127.0.0.1")
    redis_url = (
        f"redis://{host}:{os.environ.get('ANIMEGAN_TEST_REDIS_PORT', '6379')}/"
        f"{os.environ.get('ANIMEGAN_TEST_REDIS_DB', '9')}"
    )
    redis.Redis.from_url(redis_url).flushdb()
    root = tmp_path_factory.mktemp("readme-http")
    shutil.copytree(cli_workspace / "photos", root / "photos")
    (root / "styles").mkdir()
    for name in ("sunset", "autumn"):
        Image.open(PROJECT_ROOT / "samples" / f"{name}.jpg").resize((192, 128)).save(
            root / "styles" / f"{name}.jpg"
        )
    shutil.copy(root / "photos" / "meadow.jpg", root / "photo.jpg")
    (root / "models").mkdir()
    shutil.copy(cli_workspace / "paprika.safetensors", root / "models" / "paprika.safetensors")
    vgg = load_module(PROJECT_ROOT / "tests" / "animegan" / "vgg_fixtures.py").write_vgg19_npy(
        root / "vgg19.npy"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api_url = f"http://127.0.0.1:{port}"
    env = shell_env(
        ANIMEGAN_REDIS_URL=redis_url,
        ANIMEGAN_STORAGE_URL=(root / "storage").as_uri(),
        ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS="true",
        ANIMEGAN_WEBHOOK_SECRET="readme-secret",
        ANIMEGAN_VGG_WEIGHTS=str(vgg),
        ANIMEGAN_TRAIN_SEGMENT_SECONDS="30",
        ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS="120",
    )
    logs = {name: (root / f"{name}.log").open("wb") for name in ("api", "worker")}
    procs = {
        "api": [str(VENV_BIN / "animegan"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        "worker": [str(VENV_BIN / "animegan"), "worker", "--concurrency", "1"],
    }
    started = {
        name: subprocess.Popen(argv, env=env, cwd=root, stdout=logs[name], stderr=subprocess.STDOUT)
        for name, argv in procs.items()
    }
    receiver = WebhookReceiver()
    try:

        def ready() -> bool:
            for name, proc in started.items():
                assert proc.poll() is None, f"{name} exited:\n{(root / f'{name}.log').read_text()[-3000:]}"
            try:
                return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "the API's /readyz")
        keys = subprocess.run(
            [str(VENV_BIN / "animegan"), "keys", "create", "--tenant", "readme"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        key = re.search(r"\bagk_[A-Za-z0-9_-]+", keys.stdout).group(0)
        (root / "data" / "local").mkdir(parents=True)
        (root / "data" / "local" / "api-key").write_text(key + "\n")
        yield root, {**env, "ANIMEGAN_API_URL": api_url, "WEBHOOK_URL": receiver.url}, key, receiver
    finally:
        receiver.close()
        for proc in started.values():
            proc.terminate()
        for proc in started.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log_file in logs.values():
            log_file.close()


@pytest.mark.e2e
def test_http_examples_run_as_written(http_stack):
    import zipfile

    import httpx
    from PIL import Image

    root, env, key, receiver = http_stack
    blocks = tagged_blocks("http")
    assert len(blocks) >= 5, "README lost some of its HTTP examples"
    script = "\n".join(blocks)
    proc = run_bash(script, root, env, timeout=300)
    logs = {name: (root / f"{name}.log").read_text(errors="replace")[-2000:] for name in ("api", "worker")}
    assert proc.returncode == 0, (
        f"README HTTP examples failed:\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}\n{logs}"
    )

    assert Image.open(root / "photo.anime.jpg").format == "JPEG"
    assert Image.open(root / "first.png").format == "PNG"
    with zipfile.ZipFile(root / "results.zip") as archive:
        assert len([n for n in archive.namelist() if not n.endswith("/")]) == 2
    client = httpx.Client(base_url=env["ANIMEGAN_API_URL"], headers={"Authorization": f"Bearer {key}"})
    trainings = client.get("/v1/jobs", params={"kind": "train"}).json()["items"]
    assert len(trainings) == 1
    wait_until(
        lambda: client.get(f"/v1/jobs/{trainings[0]['id']}").json()["status"] == "canceled",
        120,
        "canceled training",
    )
    wait_until(lambda: receiver.received, 120, "the webhook delivery")
    from workers.jobs.webhooks import verify

    headers, body = receiver.received[0]
    event = verify("readme-secret", headers, body)
    assert event["type"] == "job.succeeded" and event["data"]["kind"] == "stylize"
