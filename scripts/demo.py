"""The local demo behind deploy/local/run.sh: start the API and one worker, stylize photos through the HTTP API.

State (pids, logs, the demo API key, the demo model) lives in data/local/; results go to results/demo/.
Run it through ./deploy/local/run.sh, which first makes the virtualenv and makes sure Redis answers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "data" / "local"
MODELS = STATE / "models"
SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos"
SAMPLES = ROOT / "samples"
ANIMEGAN = Path(sys.executable).with_name("animegan")
UNTRAINED_NAME = "untrained-v2"
# The styles that ship with the project (scripts/builtin_style.py made them); the demo's default is the first.
BUILTIN_MODELS = ROOT / "models" / "builtin"
BUILTIN_NAME = "hayao-builtin"
TENANT = "demo"
HOW_TO_GET_WEIGHTS = (
    "To get real results: download a published AnimeGANv2 generator, e.g. paprika.pt or face_paint_512_v2.pt from\n"
    "  https://github.com/bryandlee/animegan2-pytorch/tree/main/weights, and run\n"
    "  ./deploy/local/run.sh --weights /path/to/paprika.pt\n"
    "or train a style (README.md, 'Training a new style')."
)


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def pid_alive(pid: int) -> bool:
    # A child of this process (started by this run, then stopped by --once) lingers as a zombie until reaped.
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(name: str) -> int | None:
    path = STATE / f"{name}.pid"
    if not path.is_file():
        return None
    pid = int(path.read_text().split()[0])
    return pid if pid_alive(pid) else None


def start_process(name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start `argv` in its own session (it outlives this script), logging to data/local/NAME.log."""
    pid = read_pid(name)
    if pid is not None:
        log(f"{name} already running (pid {pid}); reusing it")
        return pid
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    log_path = STATE / "logs" / f"{name}.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (STATE / f"{name}.pid").write_text(f"{proc.pid}\n")
    log(
        f"started {name} (pid {proc.pid}): {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv))}"
    )
    return proc.pid


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"


def stop_process(name: str, timeout: float) -> None:
    pid = read_pid(name)
    (STATE / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return
    # Each process was started as a session leader, so its group is exactly what this demo started.
    log(f"stopping {name} (pid {pid})")
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        log(f"{name} did not stop within {timeout:.0f} s; killing it")
        os.killpg(pid, signal.SIGKILL)


def stop_all() -> None:
    stop_process("worker", timeout=60)  # warm shutdown: the current chunk of images finishes first
    stop_process("api", timeout=20)
    redis_pid = read_pid("redis")
    if redis_pid is not None:
        log(f"stopping the redis-server run.sh started (pid {redis_pid})")
        os.kill(redis_pid, signal.SIGTERM)
    (STATE / "redis.pid").unlink(missing_ok=True)


def wait_ready(api_url: str, pid_names: list[str], timeout: float) -> None:
    """Poll /readyz until it answers 200; fail with the log tail if a process died or time ran out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for name in pid_names:
            if read_pid(name) is None:
                raise SystemExit(
                    f"[demo] {name} exited during start-up; its log ends:\n{tail(STATE / 'logs' / f'{name}.log')}"
                )
        try:
            response = httpx.get(f"{api_url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SystemExit(
        f"[demo] the API at {api_url} was not ready within {timeout:.0f} s ({last}); see {STATE / 'logs'}"
    )


def prepare_model(weights: Path | None) -> tuple[str, bool]:
    """Put the demo's models into data/local/models (the worker's ANIMEGAN_MODELS_DIR): the built-in styles,
    the untrained generator (pipeline checks, by name) and any --weights; return (default model, imported?)."""
    from animegan.weights import load_generator, save_generator

    MODELS.mkdir(parents=True, exist_ok=True)
    for shipped in sorted(BUILTIN_MODELS.glob("*.safetensors")):
        target = MODELS / shipped.name
        if not target.is_file() or target.stat().st_mtime < shipped.stat().st_mtime:
            shutil.copy2(shipped, target)
    if weights is not None:
        name = re.sub(r"[^a-z0-9_-]", "-", weights.stem.lower())[:64]
        target = MODELS / f"{name}.safetensors"
        if not target.is_file() or target.stat().st_mtime < weights.stat().st_mtime:
            loaded = load_generator(weights)
            save_generator(
                target, loaded.model, metadata={**loaded.metadata, "name": name, "source": str(weights)}
            )
            log(f"imported {weights} as model {name!r}")
        return name, True
    target = MODELS / f"{UNTRAINED_NAME}.safetensors"
    if not target.is_file():
        import torch

        from animegan.config import GeneratorConfig
        from animegan.nn import build_generator

        torch.manual_seed(0)
        generator = build_generator(GeneratorConfig(arch="v2"))
        save_generator(
            target, generator, metadata={"name": UNTRAINED_NAME, "source": "untrained (random init, seed 0)"}
        )
    if (MODELS / f"{BUILTIN_NAME}.safetensors").is_file():
        return BUILTIN_NAME, False
    return UNTRAINED_NAME, False


def builtin_description() -> str:
    """What the built-in model's file says it is (its export metadata)."""
    from workers.registry import read_export_header

    _, metadata = read_export_header(MODELS / f"{BUILTIN_NAME}.safetensors")
    return str(metadata.get("description", "trained by scripts/builtin_style.py"))


def api_key(api_url: str, env: dict[str, str]) -> str:
    """The demo tenant's key: reuse the saved one if the API accepts it, else create one."""
    path = STATE / "api-key"
    if path.is_file():
        key = path.read_text().strip()
        response = httpx.get(f"{api_url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        if response.status_code == 200:
            return key
    proc = subprocess.run(
        [str(ANIMEGAN), "keys", "create", "--tenant", TENANT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"\bagk_[A-Za-z0-9_-]+", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise SystemExit(
            f"[demo] `animegan keys create` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    path.write_text(match.group(0) + "\n")
    path.chmod(0o600)
    return match.group(0)


def wait_for_model(api_url: str, key: str, model: str, timeout: float) -> None:
    """The worker registers the files of ANIMEGAN_MODELS_DIR at start; wait until the API lists `model`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{api_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        if response.status_code == 200 and model in {m["name"] for m in response.json()["items"]}:
            return
        if read_pid("worker") is None:
            raise SystemExit(
                f"[demo] the worker exited; its log ends:\n{tail(STATE / 'logs' / 'worker.log')}"
            )
        time.sleep(0.5)
    raise SystemExit(
        f"[demo] model {model!r} was not registered within {timeout:.0f} s; see {STATE / 'logs'}"
    )


def photo_folder(requested: Path | None) -> Path:
    if requested is not None:
        if not requested.is_dir():
            raise SystemExit(f"[demo] --photos {requested}: not a folder")
        return requested
    # The shared photos are not redistributable: used where they sit beside the checkout, else our own samples.
    return SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else SAMPLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/local/run.sh", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photos", type=Path, help="folder of photos (default: ../shared/data/photos or samples/)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "demo", help="results folder")
    parser.add_argument(
        "--weights", type=Path, help="a generator file: a bryandlee AnimeGANv2 .pt or our export"
    )
    parser.add_argument("--port", type=int, default=8000, help="API port on 127.0.0.1 (default 8000)")
    parser.add_argument("--once", action="store_true", help="stop the API, worker and Redis afterwards")
    parser.add_argument("--stop", action="store_true", help="only stop what an earlier run started")
    args = parser.parse_args(argv)
    if args.stop:
        stop_all()
        log("stopped")
        return 0
    if args.weights is not None and not args.weights.is_file():
        raise SystemExit(f"[demo] --weights {args.weights}: no such file")

    api_url = f"http://127.0.0.1:{args.port}"
    photos = photo_folder(args.photos)
    model, trained = prepare_model(args.weights)
    env = {**os.environ, "ANIMEGAN_MODELS_DIR": str(MODELS)}
    if read_pid("api") is None:
        try:
            httpx.get(f"{api_url}/healthz", timeout=1)
            raise SystemExit(f"[demo] something else already answers on port {args.port}; pass --port N")
        except httpx.HTTPError:
            pass
    start_process("api", [str(ANIMEGAN), "serve", "--host", "127.0.0.1", "--port", str(args.port)], env)
    start_process("worker", [str(ANIMEGAN), "worker", "--concurrency", "1", "--loglevel", "info"], env)
    key: str | None = None
    try:
        wait_ready(api_url, ["api", "worker"], timeout=90)
        key = api_key(api_url, env)
        wait_for_model(api_url, key, model, timeout=90)
        return _stylize_samples(args, api_url, key, model, trained, photos, env)
    except SystemExit:
        # A step failed, but what started may still run: say where it is and how to stop it, not only why.
        if args.once:
            stop_all()
        else:
            _still_running(api_url, key)
        raise


def _still_running(api_url: str, key: str | None) -> None:
    if read_pid("api") is not None:
        log(f"the API is still running at {api_url} (OpenAPI docs: {api_url}/docs); logs in {STATE / 'logs'}")
        if key:
            log(f"the web page: {api_url}/#key={key}")
    log("stop everything with: ./deploy/local/run.sh --stop")


def _stylize_samples(
    args: argparse.Namespace,
    api_url: str,
    key: str,
    model: str,
    trained: bool,
    photos: Path,
    env: dict[str, str],
) -> int:

    if args.out.exists():
        shutil.rmtree(args.out)
    count = len([p for p in photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}])
    log(f"stylizing {count} photos from {photos} with model {model!r} through {api_url}")
    started = time.monotonic()
    submit = [str(ANIMEGAN), "submit", str(photos), "--model", model, "--out", str(args.out)]
    proc = subprocess.run([*submit, "--api", api_url, "--key", key], env=env)
    if proc.returncode != 0:
        raise SystemExit(
            f"[demo] `animegan submit` failed ({proc.returncode}); worker log: {STATE / 'logs' / 'worker.log'}"
        )
    written = sorted(p for p in args.out.rglob("*") if p.is_file())
    log(f"{len(written)} files written to {args.out} in {time.monotonic() - started:.1f} s")
    if trained:
        log(f"model: {model!r}, imported from {args.weights}")
    elif model == BUILTIN_NAME:
        log(f"model: {model!r}, the built-in Hayao-like style: {builtin_description()}")
        others = sorted(p.stem for p in MODELS.glob("*.safetensors") if p.stem != BUILTIN_NAME)
        log(f"also available by name: {', '.join(others)}")
    else:
        log(f"model: {model!r}, an UNTRAINED AnimeGANv2 generator (random weights, seed 0).")
        log("These outputs are colour-shifted, textured copies of the photos, NOT anime-style results.")
        print(HOW_TO_GET_WEIGHTS, flush=True)
    # run.sh cannot change the caller's shell: the `animegan` command is on PATH once the venv is active.
    activate = f"source {os.path.relpath(sys.prefix, ROOT)}/bin/activate"
    log(f"the animegan command and the README's examples, in this shell: {activate}")
    if args.once:
        stop_all()
        return 0
    log(f"the API is running at {api_url} (OpenAPI docs: {api_url}/docs); logs in {STATE / 'logs'}")
    log(f"the web page: {api_url}/  (paste the API key {key})")
    log(f"  or open {api_url}/#key={key} to have it filled in")
    log(f'try: curl -H "Authorization: Bearer $(cat {STATE / "api-key"})" {api_url}/v1/jobs')
    log("stop everything with: ./deploy/local/run.sh --stop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
