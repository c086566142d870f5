"""What callers of a hosted model API expect, through real HTTP against a real API, Redis and worker: a synchronous
answer (`Prefer: wait`), deadlines, queue position and ETA, the webhook event filter. The worker consumes the
stylize queue only, so training jobs stay queued for as long as a test needs (a queue nobody serves)."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from api.auth import create_api_key
from api.events import POLL_SECONDS
from tests.api.conftest import ApiProcess
from tests.conftest import wait_until
from tests.e2e.conftest import BUILTIN_MODEL, OWNER, make_service, png_bytes
from workers import redis_keys

pytestmark = pytest.mark.e2e

TRAIN_HYPER = {"image_size": 32, "batch_size": 2, "base_channels": 8, "max_total_steps": 4}
FAULT_HOOKS = Path(__file__).with_name("fault_hooks")
# Every image this module's worker reads takes this long: a model of known speed.
IMAGE_SECONDS = 0.25


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("hosted")
    service = make_service(root, "local", request)
    service.env["ANIMEGAN_MAX_ACTIVE_JOBS"] = "500"
    api = ApiProcess(service.env, root / "api.log").wait_ready()
    try:
        service.start_worker(
            "hosted",
            queues="stylize,webhooks",
            PYTHONPATH=os.pathsep.join(filter(None, [str(FAULT_HOOKS), os.environ.get("PYTHONPATH")])),
            FAULT_SLOW_IMAGE_SECONDS=str(IMAGE_SECONDS),
        )
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


def post_batch(client, count: int, headers=None, **fields):
    files = [("files", (f"p{i}.png", png_bytes((40, 40), seed=i), "image/png")) for i in range(count)]
    return client.post(
        "/v1/batches", data={"model": BUILTIN_MODEL, **fields}, files=files, headers=headers or {}
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


# --- Deadlines ------------------------------------------------------------------------------------------------


def test_a_queued_job_expires_at_its_deadline_without_running(stack):
    service, client = stack
    created = post_training(client, {"Cancel-After": "2s"})
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["deadline"] == pytest.approx(time.time() + 2, abs=1.5)
    events = []
    with client.stream("GET", job["links"]["events"], timeout=30) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    final = client.get(job["links"]["self"]).json()
    assert final["status"] == "expired" and final["started_at"] is None
    assert final["error"]["code"] == "deadline_exceeded"
    assert "passed while the job was queued; it never ran" in final["error"]["message"]
    assert events[-1]["status"] == "expired"  # the stream ends with it
    assert final["finished_at"] - job["deadline"] < 3  # the sweep runs each second
    assert final["deadline"] == job["deadline"]


def test_prefer_wait_composes_with_cancel_after(stack):
    _, client = stack
    started = time.monotonic()
    answer = post_training(client, {"Cancel-After": "1s", "Prefer": "wait=20"})
    assert answer.status_code == 200 and answer.json()["status"] == "expired", answer.text
    assert time.monotonic() - started < 6


def test_a_running_batch_is_stopped_at_its_deadline_and_keeps_the_images_done(stack):
    service, client = stack
    deadline = time.time() + 2.5
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(deadline)) + f".{int(deadline % 1 * 1000):03d}Z"
    created = post_batch(client, 16, deadline=iso)  # 16 x 0.25 s: about 4 s of work
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert created.json()["deadline"] == pytest.approx(deadline, abs=0.01)
    final = service.wait_status(job_id, {"expired", "succeeded", "partial", "failed"}, timeout=60)
    assert final.status == "expired", final
    done = final.progress["done"]
    assert 1 <= done < 16, final.progress
    assert final.started_at is not None and final.error["code"] == "deadline_exceeded"
    assert f"stopped with {done} of 16 done" in final.error["message"]
    assert client.get(f"/v1/jobs/{job_id}/results/0").status_code == 200  # a finished image stays
    assert client.get(f"/v1/jobs/{job_id}/results/15").status_code == 409


@pytest.mark.parametrize(
    ("headers", "fields", "message"),
    [
        ({"Cancel-After": "soon"}, {}, "is not a duration such as 90s, 5m or 1h30m"),
        ({"Cancel-After": "0s"}, {}, "must be above 0 s"),
        ({}, {"deadline": "2020-01-01T00:00:00Z"}, "has already passed"),
        ({}, {"deadline": "2099-01-01T00:00:00"}, "time zone"),
        ({"Cancel-After": "5m"}, {"deadline": "2099-01-01T00:00:00Z"}, "send one of them, not both"),
    ],
)
def test_bad_deadlines_are_422_naming_the_problem(stack, headers, fields, message):
    _, client = stack
    answer = post_stylize(client, headers, **fields)
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]["message"]


def test_cancel_after_durations(stack):
    _, client = stack
    for text, seconds in (("90s", 90), ("5m", 300), ("1h30m", 5400)):
        job = post_training(client, {"Cancel-After": text}).json()
        assert job["deadline"] == pytest.approx(time.time() + seconds, abs=2), text


# --- Queue position and ETA -----------------------------------------------------------------------------------


def test_queue_position_and_eta_follow_a_real_queue_of_known_jobs(stack):
    service, client = stack
    for _ in range(3):  # a history of this model on this queue: tasks of about IMAGE_SECONDS each
        assert post_stylize(client, {"Prefer": "wait=30"}).json()["status"] == "succeeded"
    ids = [post_stylize(client).json()["id"] for _ in range(8)]
    last = client.get(f"/v1/jobs/{ids[-1]}").json()
    statuses = [client.get(f"/v1/jobs/{i}").json()["status"] for i in ids[:-1]]
    queue = last["queue"]
    assert last["status"] == "queued" and queue["queue"] == "stylize" and queue["workers"] == 1, last
    # The tasks ahead are the earlier jobs not started yet (one may start between the two reads).
    assert abs(queue["position"] - statuses.count("queued")) <= 1, (queue, statuses)
    assert queue["position"] >= 4, queue
    assert IMAGE_SECONDS <= queue["task_seconds"] < IMAGE_SECONDS + 1.5, queue
    assert queue["basis"].endswith(f"the mean of model {BUILTIN_MODEL}"), queue
    predicted_start, predicted_end = queue["starts_at"], queue["ends_at"]
    assert predicted_end - predicted_start == pytest.approx(queue["task_seconds"], abs=0.01)

    positions = []
    with client.stream("GET", f"/v1/jobs/{ids[-1]}/events", timeout=60) as stream:
        name = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name == "queue":
                positions.append(json.loads(line[5:])["position"])
    final = client.get(f"/v1/jobs/{ids[-1]}").json()
    assert final["status"] == "succeeded" and final["queue"] is None
    # The stream told the position as it fell (checked each POLL_SECONDS, so it may skip a few tasks).
    assert positions == sorted(positions, reverse=True) and len(set(positions)) >= 2, positions
    assert positions[-1] <= 1 + POLL_SECONDS / queue["task_seconds"], positions
    # The estimate was of the real queue: the job started about when it said (the same worker, the same tasks).
    error = abs(final["started_at"] - predicted_start)
    print(
        f"position {queue['position']}, task {queue['task_seconds']} s, start error {error:.2f} s, {positions}"
    )
    assert error < max(1.0, 0.4 * (predicted_start - last["created_at"])), (
        final["started_at"],
        predicted_start,
    )


def test_a_queue_nobody_serves_has_a_position_and_says_why_there_is_no_eta(stack):
    _, client = stack
    first, second, third = (post_training(client).json()["id"] for _ in range(3))
    a, c = (client.get(f"/v1/jobs/{i}").json()["queue"] for i in (first, third))
    assert c["position"] - a["position"] == 2 and c["queue"] == "train" and c["workers"] == 0
    assert c["starts_at"] is None and c["ends_at"] is None
    assert "no task of its kind has run on this queue yet" in c["basis"]
    # A canceled job's task no longer counts as ahead of the others.
    assert client.post(f"/v1/jobs/{second}/cancel").status_code == 200
    assert client.get(f"/v1/jobs/{third}").json()["queue"]["position"] == c["position"] - 1


# --- Webhook event filter ---------------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    deliveries: list = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).deliveries.append((self.headers["webhook-id"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver():
    handler = type("Receiver", (_Receiver,), {"deliveries": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.deliveries
    server.shutdown()
    server.server_close()


def test_a_webhook_filter_of_start_progress_completed_delivers_each(stack, receiver):
    service, client = stack
    url, deliveries = receiver
    fields = {"webhook_url": url, "webhook_events_filter": ["start", "progress", "completed"]}
    created = post_batch(client, 4, **fields)
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["webhook_events_filter"] == ["start", "progress", "completed"]
    service.wait_status(job["id"], {"succeeded"}, timeout=60)
    wait_until(lambda: any(d[1]["type"] == "job.succeeded" for d in deliveries), 30, "the completed webhook")
    types = [d[1]["type"] for d in deliveries]
    assert types[0] == "job.start" and types[-1] == "job.succeeded", types
    # Progress is rate-limited: 4 images in about 1 s are one progress delivery, not four.
    assert types.count("job.progress") == 1, types
    assert len({d[0] for d in deliveries}) == len(deliveries)  # each its own webhook-id
    assert all(d[1]["data"]["id"] == job["id"] for d in deliveries)


def test_the_default_filter_is_the_completed_event_only(stack, receiver):
    service, client = stack
    url, deliveries = receiver
    job = post_stylize(client, {"Prefer": "wait=30"}, webhook_url=url).json()
    assert job["status"] == "succeeded" and job["webhook_events_filter"] == ["completed"]
    wait_until(lambda: deliveries, 30, "the completed webhook")
    time.sleep(1)  # room for a wrong extra delivery to arrive
    assert [d[1]["type"] for d in deliveries] == ["job.succeeded"]


def test_a_filter_of_start_only_leaves_out_completion(stack, receiver):
    service, client = stack
    url, deliveries = receiver
    job = post_stylize(client, {"Prefer": "wait=30"}, webhook_url=url, webhook_events_filter="start").json()
    assert job["status"] == "succeeded", job
    wait_until(lambda: deliveries, 30, "the start webhook")
    time.sleep(1.5)
    assert [d[1]["type"] for d in deliveries] == ["job.start"]


def test_a_filter_without_a_webhook_url_or_with_an_unknown_event_is_422(stack):
    _, client = stack
    assert post_stylize(client, webhook_events_filter="start").status_code == 422
    bad = post_stylize(client, webhook_url="http://127.0.0.1:9/x", webhook_events_filter="finished")
    assert bad.status_code == 422 and "webhook_events_filter" in bad.text


# --- Deleting what you own ------------------------------------------------------------------------------------


def stored_under(service, job_id: str, record: dict) -> list[str]:
    from workers import keys

    prefixes = [keys.inputs_prefix(job_id), keys.outputs_prefix(job_id), keys.run_prefix(job_id)]
    datasets = (record.get("params") or {}).get("datasets") or {}
    prefixes += sorted({d["key"].rsplit("/", 1)[0] + "/" for d in datasets.values()})
    return [key for prefix in prefixes for key in service.store.list(prefix)]


def test_delete_removes_an_ended_jobs_record_inputs_and_outputs(stack):
    service, client = stack
    job = post_stylize(client, {"Prefer": "wait=30"}).json()
    assert job["status"] == "succeeded"
    assert len(stored_under(service, job["id"], job)) == 2  # the input and the output
    other = httpx.Client(
        base_url=service.api.url, headers={"Authorization": f"Bearer {create_api_key(service.redis, 'bob')}"}
    )
    assert other.delete(job["links"]["self"]).status_code == 404  # not bob's: the same 404 as a missing job
    assert client.delete(job["links"]["self"]).status_code == 204
    assert client.get(job["links"]["self"]).status_code == 404
    assert client.get(job["links"]["result"]).status_code == 404
    assert job["id"] not in {j["id"] for j in client.get("/v1/jobs", params={"limit": 200}).json()["items"]}
    assert stored_under(service, job["id"], job) == []
    assert [k for k in service.redis.scan_iter(f"animegan:job:{job['id']}*")] == []
    assert client.delete(job["links"]["self"]).status_code == 404


def test_delete_of_a_job_that_has_not_ended_is_409_then_works_after_cancel(stack):
    service, client = stack
    job = post_training(client).json()
    assert len(stored_under(service, job["id"], job)) == 1  # the photos zip the API stored
    refused = client.delete(job["links"]["self"])
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_active"
    assert "cancel it first" in refused.json()["error"]["message"]
    assert client.get(job["links"]["self"]).json()["status"] == "queued"  # nothing was touched
    assert client.post(job["links"]["cancel"]).json()["status"] == "canceled"
    assert client.delete(job["links"]["self"]).status_code == 204
    assert stored_under(service, job["id"], job) == []


def test_a_direct_upload_can_be_deleted(stack):
    from workers import keys

    service, client = stack
    data = png_bytes(seed=3)
    upload = client.post("/v1/uploads", json={"purpose": "image", "size": len(data)}).json()
    assert client.put(upload["url"], content=data).status_code == 200
    key = keys.upload(OWNER, upload["id"])
    assert service.store.exists(key)
    assert client.delete(f"/v1/uploads/{upload['id']}").status_code == 204
    assert not service.store.exists(key)
    assert client.get(f"/v1/uploads/{upload['id']}").status_code == 404
    assert client.delete(f"/v1/uploads/{upload['id']}").status_code == 404


def test_cancel_of_a_running_single_image_ends_it_canceled(stack):
    service, client = stack
    job = post_stylize(client).json()
    service.wait_status(job["id"], {"running"}, timeout=30)
    assert client.post(job["links"]["cancel"]).status_code == 200
    final = service.wait_status(job["id"], {"canceled", "succeeded"}, timeout=30)
    assert final.status == "canceled"
    assert client.get(job["links"]["result"]).status_code == 409


@pytest.mark.parametrize(
    "path",
    ["/v1/stylize", "/v1/batches", "/v1/videos", "/v1/trainings", f"/v1/models/{BUILTIN_MODEL}/exports"],
)
def test_a_json_body_gets_told_what_the_route_takes(stack, path):
    _, client = stack
    answer = client.post(path, json={"image": "https://example.com/p.jpg"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameters", error
    assert error["message"].startswith(f"image: not a field of {path} (it takes ")
    assert "field required" not in error["message"].lower()
