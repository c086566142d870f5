"""README.md kept true: its settings table is current, its names are real, and its examples run as written.

Every fenced bash block is tagged. `<!-- readme-test: cli -->` blocks run verbatim, in order, in one shell, in a
copy of the checkout in the state the quick start leaves (`.venv`, the demo's model in data/local/models);
`http` blocks likewise against a real API and worker started as the demo starts them; `template` blocks (a
user's own files, hosts or GPUs) are only checked for syntax with `bash -n`. Nothing in a block is substituted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_DB, TEST_REDIS_HOST, TEST_REDIS_PORT, free_port, wait_until

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


BLOCK = re.compile(r"(?:<!-- readme-test: (\w+)[^>]*-->\s*)?```bash\n(.*?)```", flags=re.S)


def bash_blocks() -> list[tuple[str | None, str]]:
    """(tag or None, code) of every fenced bash block, in README order."""
    return BLOCK.findall(readme())


def tagged_blocks(tag: str) -> list[str]:
    return [code for block_tag, code in bash_blocks() if block_tag == tag]


def run_bash(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run pasted commands with -e, so that every one of them has to succeed (as a reader sees them do)."""
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def reader_env(**extra: str) -> dict[str, str]:
    """A reader's environment: no ANIMEGAN_* settings and no virtualenv on PATH until a block activates it."""
    venv_bin = str(VENV_BIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra)
    return env


def test_settings_table_is_generated_from_the_settings_classes():
    table = load_module(PROJECT_ROOT / "scripts" / "settings_table.py").markdown()
    match = re.search(
        r"<!-- settings-table:begin -->\n(.*?)<!-- settings-table:end -->", readme(), flags=re.S
    )
    assert match, "README.md lost its settings-table markers"
    assert match.group(1) == table, "README settings table is stale: run `make settings-table` and paste it"


def test_every_setting_has_its_own_description():
    # A field without a comment of its own inherits the one above it: two settings then claimed one meaning.
    rows = load_module(PROJECT_ROOT / "scripts" / "settings_table.py").rows()
    meanings = [meaning for _, _, _, meaning in rows]
    shared = {m for m in meanings if meanings.count(m) > 1}
    assert not shared, f"settings share a description: {[r[0] for r in rows if r[3] in shared]}"


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


def test_every_bash_block_is_run_or_marked_as_a_template():
    blocks = bash_blocks()
    quick_start = re.search(r"## Quick start.*?```bash\n(.*?)```", readme(), flags=re.S).group(1)
    untagged = [
        code for tag, code in blocks if tag not in ("cli", "http", "template") and code != quick_start
    ]
    assert not untagged, f"README bash blocks without a readme-test tag: {untagged}"


def test_template_blocks_are_valid_bash():
    templates = tagged_blocks("template")
    assert templates, "README has no template blocks"
    for code in templates:
        proc = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"README template block is not valid bash:\n{code}\n{proc.stderr}"


def test_readme_names_every_route_outside_v1():
    from api.main import create_app
    from api.routes.web import router as web_router
    from api.settings import ApiSettings
    from workers.settings import load_settings

    documented = create_app(load_settings(ApiSettings)).openapi()["paths"]
    outside = {p for p in [*documented, *(r.path for r in web_router.routes)] if not p.startswith("/v1/")}
    assert {"/", "/docs", "/healthz", "/readyz"} <= outside and "/metrics" not in outside
    for path in outside:
        assert f"`{path}`" in readme(), f"README does not name the route {path}"
    assert "Every route is under" not in readme(), "README claims every route is under /v1"


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
def clone_after_quick_start(tmp_path_factory) -> Path:
    """A copy of the checkout's files (tracked and new, not ignored) plus what the quick start leaves behind:
    `.venv` (this test's environment) and the demo's models in data/local/models (the built-in ones and
    untrained-v2)."""
    root = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to(sys.prefix)
    demo = load_module(PROJECT_ROOT / "scripts" / "demo.py")
    demo.MODELS = root / "data" / "local" / "models"  # the demo's own recipe, written into the copy
    assert demo.prepare_model(None) == (demo.BUILTIN_NAME, False)
    assert (demo.MODELS / f"{demo.UNTRAINED_NAME}.safetensors").is_file()
    return root


def test_cli_examples_run_as_written(clone_after_quick_start):
    from PIL import Image

    root = clone_after_quick_start
    script = "\n".join(tagged_blocks("cli"))
    assert "source .venv/bin/activate" in script, "the README must say to activate the virtualenv"
    proc = run_bash(script, root, reader_env(), timeout=600)
    assert proc.returncode == 0, f"README CLI examples failed:\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}"
    samples = sorted(p.stem for p in (root / "samples").glob("*.jpg"))
    outputs = sorted(p.name for p in (root / "out").glob("*.png"))
    assert outputs == sorted([f"{s}.png" for s in samples] + ["meadow.untrained-demo.png"])
    assert (
        Image.open(root / "out" / "tiled" / "lake.png").size == Image.open(root / "samples" / "lake.jpg").size
    )
    assert "arch:    v2" in proc.stdout
    # The smoke run leaves the init phase: it is meant to run every part of training.
    phases = {json.loads(line)["phase"] for line in (root / "runs" / "smoke" / "losses.jsonl").open()}
    assert phases == {"init", "gan"}, phases
    assert len(list((root / "out" / "smoke").iterdir())) == len(samples)


@pytest.fixture(scope="module")
def http_stack(clone_after_quick_start):
    """The demo's processes on the copy: the API and a worker that registers data/local/models, and its key
    in data/local/api-key. Redis is the test database; the README's ANIMEGAN_API_URL names the API's port."""
    import httpx
    import redis

    root = clone_after_quick_start
    redis_url = f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{TEST_REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = reader_env(
        ANIMEGAN_REDIS_URL=redis_url,
        ANIMEGAN_MODELS_DIR=str(root / "data" / "local" / "models"),
        ANIMEGAN_TORCH_THREADS="1",
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
    try:

        def ready() -> bool:
            for name, proc in started.items():
                assert proc.poll() is None, f"{name} exited:\n{(root / f'{name}.log').read_text()[-3000:]}"
            try:
                api_ready = httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
            # The worker registers data/local/models at start, before it logs " ready.".
            return api_ready and b" ready." in (root / "worker.log").read_bytes()

        wait_until(ready, 90, "the API's /readyz and the worker")
        keys = subprocess.run([str(VENV_BIN / "animegan"), "keys", "create", "--tenant", "readme"],
                              env=env, cwd=root, capture_output=True, text=True, timeout=60)  # fmt: skip
        key = re.search(r"\bagk_[A-Za-z0-9_-]+", keys.stdout).group(0)
        (root / "data" / "local" / "api-key").write_text(key + "\n")
        yield root, api_url, key
    finally:
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

    root, api_url, key = http_stack
    blocks = tagged_blocks("http")
    assert len(blocks) >= 4, "README lost some of its HTTP examples"
    proc = run_bash("\n".join(blocks), root, reader_env(ANIMEGAN_API_URL=api_url), timeout=300)
    logs = {name: (root / f"{name}.log").read_text(errors="replace")[-2000:] for name in ("api", "worker")}
    assert proc.returncode == 0, (
        f"README HTTP examples failed:\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}\n{logs}"
    )
    assert Image.open(root / "out" / "meadow.anime.jpg").format == "JPEG"
    assert Image.open(root / "out" / "first.png").format == "PNG"
    # What the examples write goes under out/ (ignored), never loose in the project root.
    loose = [n for n in ("meadow.anime.jpg", "first.png", "results.zip", "photos.zip", "lake-pan.anime.mp4")
             if (root / n).exists()]  # fmt: skip
    assert not loose, loose
    with zipfile.ZipFile(root / "out" / "results.zip") as archive:
        assert len([n for n in archive.namelist() if not n.endswith("/")]) == 2
    assert "\nprogress 2/2\n" in proc.stdout and "\nsucceeded\n" in proc.stdout, proc.stdout
    client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"})
    models = {m["name"] for m in client.get("/v1/models").json()["items"]}
    assert {"my-generator", "my-student", "hayao-builtin"} <= models, models
    assert "\nsucceeded\n" in proc.stdout and '"step":6' in proc.stdout, proc.stdout
