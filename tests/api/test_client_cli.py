"""The whole flow with a real worker: ApiClient and the `animegan submit/status/cancel/keys` commands against a
running API and `animegan worker` on Redis and local storage, with a tiny seeded generator as the model.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from api.client import ApiClient
from tests.api.conftest import ANIMEGAN, REDIS_URL, Api, png_bytes, start_api, wait_until

pytestmark = pytest.mark.e2e

MODEL = "tiny"
WORKER_MAX_PIXELS = 5000


def write_tiny_model(folder: Path) -> None:
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    torch.manual_seed(0)
    save_generator(
        folder / f"{MODEL}.safetensors", build_generator(GeneratorConfig(arch="v2", base_channels=8))
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("api-e2e")
    models = tmp / "models"
    models.mkdir()
    write_tiny_model(models)
    api = start_api(tmp, via_cli=True)  # the API through `animegan serve`
    # start_api registers a stand-in record for "tiny" without its file; a worker start leaves a registered
    # built-in as it is (a rollout must not flip it), so publish this export as an operator's --replace would.
    api.registry.register_builtin_models(models, api.store, replace=True)
    env = {
        **os.environ,
        "ANIMEGAN_REDIS_URL": REDIS_URL,
        "ANIMEGAN_STORAGE_URL": api.storage_root.as_uri(),
        "ANIMEGAN_MODELS_DIR": str(models),
        "ANIMEGAN_DEVICE": "cpu",
        "ANIMEGAN_TORCH_THREADS": "1",
        "ANIMEGAN_INFERENCE_PRECISION": "fp32",
        # Below the API's 1,000,000: an image of more pixels passes the API's check and fails on the worker
        # (bad_image), which is how these tests make one image of a batch fail.
        "ANIMEGAN_MAX_IMAGE_PIXELS": str(WORKER_MAX_PIXELS),
    }
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [ANIMEGAN, "worker", "--queues", "stylize", "--concurrency", "1", "--loglevel", "info"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

    def ready() -> bool:
        text = (tmp / "worker.log").read_text(errors="replace")
        if worker.poll() is not None:
            pytest.fail(f"worker exited with {worker.returncode}:\n{text[-3000:]}")
        return " ready." in text

    wait_until(ready, 90, "the worker to be ready")
    yield api, env
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=10)
    log.close()
    api.process.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANIMEGAN, *args], env=env, capture_output=True, text=True, timeout=120)


def test_client_stylize_wait_download_and_events(stack, tmp_path):
    api, _ = stack
    with ApiClient(api.url, api.keys["alice"]) as client:
        job = client.stylize(png_bytes((70, 50)), model=MODEL)
        events = list(client.events(job["id"], timeout=120))
        assert events[0][0] == "state" and events[-1][1]["status"] == "succeeded", events
        final = client.wait(job["id"], timeout=60)
        assert final["status"] == "succeeded" and final["progress"]["done"] == 1
        target = tmp_path / "out.png"
        assert client.download_result(job["id"], target) > 0
        with Image.open(target) as img:
            assert img.format == "PNG" and img.mode == "RGB"


def test_client_and_cli_get_a_single_image_in_one_request_with_prefer_wait(stack, tmp_path):
    api, env = stack
    with ApiClient(api.url, api.keys["alice"]) as client:
        job = client.stylize(png_bytes((60, 40)), model=MODEL, wait=30)
        assert job["status"] == "succeeded", job  # the create's own answer: no polling
    photo = tmp_path / "one.png"
    photo.write_bytes(png_bytes((44, 36)))
    out = tmp_path / "out"
    done = cli(env, "submit", str(photo), "--model", MODEL, "--out", str(out), "--api", api.url,
               "--key", api.keys["alice"], "--wait", "30")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "one.png") and (out / "one.png").stat().st_size > 0
    assert "stylizing" not in done.stderr  # answered finished: no progress bar to follow


def test_cli_submit_folder_status_and_cancel(stack, tmp_path):
    api, env = stack
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.open(io.BytesIO(png_bytes((40 + 8 * i, 32), color=(30 * i, 90, 150)))).save(
            photos / f"p{i}.png"
        )
    (photos / "notes.txt").write_text("not an image, skipped by the folder scan")
    out = tmp_path / "out"
    key = api.keys["alice"]
    done = cli(env, "submit", str(photos), "--model", MODEL, "--out", str(out), "--api", api.url, "--key", key,
               "--format", "jpeg", "--timeout", "120")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    for path in out.iterdir():
        with Image.open(path) as img:
            assert img.format == "JPEG"
    job_id = done.stderr.split("job ", 1)[1].split()[0]

    status = cli(env, "status", job_id, "--api", api.url, "--key", key)
    assert status.returncode == 0 and '"status": "succeeded"' in status.stdout
    cancel = cli(env, "cancel", job_id, "--api", api.url, "--key", key)
    assert cancel.returncode == 1 and "already ended" in cancel.stderr
    other = cli(env, "status", job_id, "--api", api.url, "--key", api.keys["bob"])
    assert other.returncode == 1 and "404" in other.stderr


def test_cli_submit_of_a_batch_with_failed_images_exits_1_and_says_how_many_and_why(stack, tmp_path):
    api, env = stack
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.open(io.BytesIO(png_bytes((40, 32), color=(60 * i, 90, 150)))).save(photos / f"ok{i}.png")
    Image.open(io.BytesIO(png_bytes((100, 80)))).save(photos / "big.png")  # 8,000 px: the worker refuses it
    out = tmp_path / "out"
    done = cli(env, "submit", str(photos), "--model", MODEL, "--out", str(out), "--api", api.url,
               "--key", api.keys["alice"], "--timeout", "120")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ok0.png", "ok1.png"]
    assert "2 of 3 result(s)" in done.stderr
    assert "partial: 1 of 3 images failed: bad_image x1" in done.stderr, done.stderr
    job_id = done.stderr.split("job ", 1)[1].split()[0]
    job = httpx.get(f"{api.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {api.keys['alice']}"})
    body = job.json()
    assert body["status"] == "partial" and body["error"]["code"] == "some_images_failed"
    assert body["result"]["failures"] == {"bad_image": 1} and body["progress"]["failed"] == 1
    # The archive of a partial batch is its result: the images done plus errors.json.
    archive = httpx.get(
        f"{api.url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {api.keys['alice']}"}
    )
    assert archive.status_code == 200 and archive.content[:2] == b"PK"


def test_cli_submit_of_one_image_that_fails_exits_1_naming_the_error(stack, tmp_path):
    api, env = stack
    photo = tmp_path / "big.png"
    Image.open(io.BytesIO(png_bytes((100, 80)))).save(photo)
    done = cli(env, "submit", str(photo), "--model", MODEL, "--out", str(tmp_path / "out"), "--api", api.url,
               "--key", api.keys["alice"], "--timeout", "120")  # fmt: skip
    assert done.returncode == 1
    assert " failed: bad_image: " in done.stderr and "is above the limit of 5,000 pixels" in done.stderr, (
        done.stderr
    )


def test_cli_keys_create_prints_a_working_token(stack):
    api, env = stack
    made = cli(env, "keys", "create", "--tenant", "dave")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("agk_") and "shown only this once" in made.stderr
    answer = httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["items"] == []
    # The token itself is never stored, only its hash.
    assert not any(token in str(api.redis.hgetall(k)) for k in api.redis.scan_iter("animegan:apikey:*"))
    bad = cli(env, "keys", "create", "--tenant", "Not Valid")
    assert bad.returncode == 2 and "tenant name" in bad.stderr


def test_cli_submit_skips_an_unreadable_file_like_stylize_does(stack, tmp_path):
    # The API refuses a whole batch for one bad image (415), so submit refused the whole folder.
    api, env = stack
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.open(io.BytesIO(png_bytes((40, 32), color=(60 * i, 90, 150)))).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    done = cli(env, "submit", str(photos), "--model", MODEL, "--out", str(out), "--api", api.url,
               "--key", api.keys["alice"], "--timeout", "120")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]
    assert f"skipped {photos / 'broken.jpg'}" in done.stderr and "Traceback" not in done.stderr


def test_cli_submit_with_the_api_down_prints_one_line(tmp_path):
    from tests.conftest import free_port

    photo = tmp_path / "p.png"
    photo.write_bytes(png_bytes((40, 32)))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    done = cli(env, "submit", str(photo), "--model", MODEL, "--out", str(tmp_path / "out"), "--api", url)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert f"cannot reach the API at {url}" in done.stderr and "Traceback" not in done.stderr
