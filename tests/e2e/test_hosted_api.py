"""What callers of a hosted model API expect, through real HTTP against a real API, Redis and worker: a synchronous
answer (`Prefer: wait`), deadlines, queue position and ETA, the webhook event filter. The worker consumes the
stylize queue only, so training jobs stay queued for as long as a test needs (a queue nobody serves)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api.auth import create_api_key
from tests.api.conftest import ApiProcess
from tests.conftest import wait_until
from tests.e2e.conftest import BUILTIN_MODEL, OWNER, make_service, png_bytes
from workers import redis_keys

pytestmark = pytest.mark.e2e

TRAIN_HYPER = {"image_size": 32, "batch_size": 2, "base_channels": 8, "max_total_steps": 4}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("hosted")
    service = make_service(root, "local", request)
    service.env["ANIMEGAN_MAX_ACTIVE_JOBS"] = "500"
    api = ApiProcess(service.env, root / "api.log").wait_ready()
    try:
        service.start_worker("hosted", queues="stylize,webhooks")
        client = httpx.Client(
            base_url=api.url,
            headers={"Authorization": f"Bearer {create_api_key(service.redis, OWNER)}"},
            timeout=90,
        )
        service.api = api
        yield service, client
    finally:
        api.stop()
        service.close()


def photos_zip(count: int = 2) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"p{i}.png", png_bytes((40, 40), seed=i))
    return buf.getvalue()


def post_stylize(client, headers=None, **fields):
    return client.post(
        "/v1/stylize",
        data={"model": BUILTIN_MODEL, **fields},
        files={"file": ("p.png", png_bytes(seed=1), "image/png")},
        headers=headers or {},
    )


def post_training(client, headers=None, **fields):
    """A distillation run: it goes to the train queue, which no worker of this module serves (it stays queued)."""
    form = {"name": f"m{time.monotonic_ns()}", "mode": "distill", "teacher": BUILTIN_MODEL,
            "hyperparameters": json.dumps(TRAIN_HYPER), **fields}  # fmt: skip
    return client.post(
        "/v1/trainings",
        data=form,
        files={"photos": ("photos.zip", photos_zip(), "application/zip")},
        headers=headers or {},
    )


# --- Prefer: wait ---------------------------------------------------------------------------------------------


def test_prefer_wait_answers_with_the_finished_job(stack):
    _, client = stack
    started = time.monotonic()
    answer = post_stylize(client, {"Prefer": "wait=30"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Preference-Applied"] == "wait=30"
    job = answer.json()
    assert job["status"] == "succeeded" and job["progress"]["done"] == 1
    assert answer.headers["Location"] == job["links"]["self"]
    assert time.monotonic() - started < 30
    image = client.get(job["links"]["result"])
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_prefer_wait_of_a_job_that_does_not_end_in_time_is_the_usual_202(stack):
    _, client = stack
    started = time.monotonic()
    answer = post_training(client, {"Prefer": "wait=2"})
    waited = time.monotonic() - started
    assert answer.status_code == 202, answer.text
    assert "Preference-Applied" not in answer.headers
    assert answer.json()["status"] == "queued"
    assert 2 <= waited < 10, waited


def test_prefer_wait_with_an_idempotency_key_replays_the_finished_job_at_once(stack):
    _, client = stack
    headers = {"Prefer": "wait=30", "Idempotency-Key": f"wait-{time.monotonic_ns()}"}
    first = post_stylize(client, headers)
    assert first.status_code == 200 and first.json()["status"] == "succeeded", first.text
    started = time.monotonic()
    again = post_stylize(client, headers)
    assert time.monotonic() - started < 2
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Preference-Applied"] == "wait=30"
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "succeeded"


@pytest.mark.parametrize("prefer", ["wait=61", "wait=soon", "wait=-1"])
def test_prefer_wait_out_of_range_is_422_and_creates_nothing(stack, prefer):
    service, client = stack
    before = len(client.get("/v1/jobs", params={"limit": 200}).json()["items"])
    answer = post_stylize(client, {"Prefer": prefer})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_prefer_wait"
    assert "from 0 to 60" in answer.json()["error"]["message"]
    assert len(client.get("/v1/jobs", params={"limit": 200}).json()["items"]) == before


def test_waiting_requests_hold_no_thread(stack):
    # 60 creates wait at once, more than the 40 threads of the pool that runs sync routes: if a wait held a
    # thread, the job reads below would queue behind them for the whole wait.
    service, client = stack
    job_id = post_stylize(client).json()["id"]
    index = redis_keys.owner_jobs(OWNER)
    before = service.redis.zcard(index)
    with ThreadPoolExecutor(60) as pool:
        waits = [pool.submit(post_training, client, {"Prefer": "wait=15"}) for _ in range(60)]
        # Every create has stored its job (and so is in its wait, or about to be) before the reads are timed.
        wait_until(lambda: service.redis.zcard(index) == before + 60, 12, "60 training jobs to be created")
        time.sleep(0.5)
        started = time.monotonic()
        for _ in range(5):
            assert client.get(f"/v1/jobs/{job_id}").status_code == 200
        reads = time.monotonic() - started
        answers = [w.result() for w in waits]
    assert all(a.status_code == 202 for a in answers), {a.status_code for a in answers}
    assert reads < 1.5, f"5 job reads took {reads:.2f} s while 60 creates waited"


def test_openapi_documents_prefer_and_preference_applied(stack):
    _, client = stack
    schema = client.get("/openapi.json").json()
    for path in ("/v1/stylize", "/v1/batches", "/v1/videos", "/v1/trainings"):
        params = {p["name"] for p in schema["paths"][path]["post"]["parameters"]}
        assert {"Prefer", "Cancel-After", "Idempotency-Key"} <= params, (path, params)
        assert "Preference-Applied" in schema["paths"][path]["post"]["responses"]["200"]["headers"]
