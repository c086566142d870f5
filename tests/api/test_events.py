"""Progress over server-sent events (current state first, then progress, ending at a terminal status), results
of finished jobs, per-image batch results as they land, and training files; the test plays the worker's part
through the JobStore on the same Redis.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.client import ApiClient, ApiClientError
from tests.api.conftest import PUBLIC_MODEL, finish_job, png_bytes
from tests.conftest import wait_until
from workers import keys


@pytest.fixture
def client(api):
    with ApiClient(api.url, api.keys["alice"], timeout=30) as c:
        yield c


def wait_for_stream(api, job_id: str) -> None:
    """Until the API's event stream of the job has subscribed to its channel (events before that are not seen)."""
    channel = api.jobs.events_channel(job_id)
    wait_until(
        lambda: dict(api.redis.pubsub_numsub(channel)).get(channel, 0) >= 1, 10, "the SSE subscription"
    )


def play_batch_worker(api, job_id: str, total: int) -> threading.Thread:
    """After the stream is open: start, count each image with a progress event, then succeed."""

    def run() -> None:
        wait_for_stream(api, job_id)
        api.jobs.start(job_id)
        for index in range(total):
            api.store.put_bytes(keys.output(job_id, index, "png"), f"image {index}".encode())
            api.jobs.mark_item_done(job_id, index)
            api.jobs.set_progress(job_id, done=index + 1)
            time.sleep(0.05)
        api.jobs.succeed(job_id, {"archive_key": keys.output_archive(job_id), "total": total})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sse_yields_state_then_progress_then_terminal(api, client):
    job = client.batch([png_bytes(), png_bytes(), png_bytes()], model=PUBLIC_MODEL)
    worker = play_batch_worker(api, job["id"], 3)
    events = list(client.events(job["id"], timeout=30))
    worker.join(timeout=10)

    names = [name for name, _ in events]
    assert names[0] == "state" and events[0][1]["status"] == "queued" and events[0][1]["id"] == job["id"]
    assert names[-1] == "state" and events[-1][1]["status"] == "succeeded"
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses == ["running", "succeeded"]
    done = [data["progress"]["done"] for name, data in events if name == "progress"]
    assert done == sorted(done) and done[-1] == 3
    # Progress comes before the terminal status event.
    assert names.index("progress") < len(names) - 1 - names[::-1].index("status")


def test_sse_of_a_finished_job_is_its_state_only(api, client):
    job = client.stylize(png_bytes(), model=PUBLIC_MODEL)
    finish_job(api, job["id"], {0: b"done"})
    events = list(client.events(job["id"], timeout=10))
    assert [(name, data["status"]) for name, data in events] == [("state", "succeeded")]


def test_sse_ends_when_the_job_is_canceled(api, client):
    job = client.stylize(png_bytes(), model=PUBLIC_MODEL)
    answers = []

    def cancel_later() -> None:
        wait_for_stream(api, job["id"])
        with api.client("alice") as other:  # its own connection: the stream holds the client's
            answers.append(other.post(f"/v1/jobs/{job['id']}/cancel").status_code)

    canceler = threading.Thread(target=cancel_later)
    canceler.start()
    events = list(client.events(job["id"], timeout=30))
    canceler.join(timeout=10)
    assert answers == [200]
    assert events[0][1]["status"] == "queued" and events[-1][1]["status"] == "canceled"


def test_results_before_and_after_success(api, client):
    job = client.batch([png_bytes(), png_bytes()], model=PUBLIC_MODEL, format="webp")
    with pytest.raises(ApiClientError) as early:
        client.result_bytes(job["id"])
    assert early.value.status == 409 and early.value.code == "result_not_ready"
    api.jobs.start(job["id"])
    api.store.put_bytes(keys.output(job["id"], 1, "webp"), b"second")
    api.jobs.mark_item_done(job["id"], 1)
    # One image is ready before the batch ends; the other is not.
    assert client.result_bytes(job["id"], index=1) == b"second"
    with pytest.raises(ApiClientError) as pending:
        client.result_bytes(job["id"], index=0)
    assert pending.value.code == "result_not_ready"
    with pytest.raises(ApiClientError) as outside:
        client.result_bytes(job["id"], index=2)
    assert outside.value.status == 404
    finish_job(api, job["id"], {0: b"first", 1: b"second"}, ext="webp")
    assert client.result_bytes(job["id"]) == b"PK-zip-stand-in"
    assert client.job(job["id"])["status"] == "succeeded"


def test_failed_job_result_names_the_error(api, client):
    job = client.stylize(png_bytes(), model=PUBLIC_MODEL)
    api.jobs.start(job["id"])
    api.jobs.fail(job["id"], "bad_input", "photo.png could not be decoded")
    with pytest.raises(ApiClientError) as err:
        client.result_bytes(job["id"])
    assert err.value.status == 409 and "photo.png could not be decoded" in err.value.message
    with pytest.raises(ApiClientError) as cancel:
        client.cancel(job["id"])
    assert cancel.value.status == 409 and "failed" in cancel.value.message


def test_training_files_are_listed_and_served(api, client):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("p.png", png_bytes())
    job = client.train("events-style", buf.getvalue(), buf.getvalue(), {"epochs": 1})
    api.store.put_bytes(keys.sample(job["id"], 200), b"sample-png")
    api.store.put_bytes(keys.checkpoint(job["id"], 200), b"checkpoint")
    api.jobs.start(job["id"])
    api.jobs.set_progress(job["id"], step=200, epoch=1, phase="gan", losses={"g_adv": 0.5})
    record = client.job(job["id"])
    assert record["progress"]["phase"] == "gan" and record["progress"]["losses"] == {"g_adv": 0.5}
    files = client.http.get(f"/v1/jobs/{job['id']}/files").json()["items"]
    assert {(f["kind"], f["name"]) for f in files} == {
        ("sample", "samples/000000200.png"),
        ("checkpoint", "checkpoints/000000200.pt"),
    }
    sample = next(f for f in files if f["kind"] == "sample")
    assert client.http.get(sample["url"]).content == b"sample-png"
    assert client.http.get(f"/v1/jobs/{job['id']}/files/samples/..%2Fconfig.json").status_code == 404


def test_client_direct_upload_on_the_local_backend(api, client):
    image = png_bytes((33, 33))
    upload_id = client.upload(image, purpose="image", filename="p.png")
    assert api.store.get_bytes(keys.upload("alice", upload_id)) == image
    job = client.batch(upload_ids=[upload_id, upload_id], model=PUBLIC_MODEL)
    assert job["progress"]["total"] == 2
    assert api.store.list(keys.inputs_prefix(job["id"])) == []  # the upload is read in place


def open_event_stream(api, job_id: str) -> socket.socket:
    """A raw HTTP/1.1 request for the job's event stream, read until its first `state` event arrived."""
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {api.keys['alice']}\r\n\r\n".encode()
    )
    seen = b""
    while b"event: state" not in seen:
        chunk = sock.recv(65536)
        assert chunk, f"the stream closed before its first event: {seen[-500:]!r}"
        seen += chunk
    return sock


def median_ms(call, times: int = 7) -> tuple[float, float]:
    """(median, max) in milliseconds of `times` calls of `call`."""
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent), max(spent)


def test_200_open_event_streams_leave_healthz_and_job_reads_fast(api, alice):
    """Each stream waits on the event loop (redis.asyncio), not in a worker thread; with a thread per stream,
    200 streams on one queued job made /healthz take 2.8 s and a job's GET 5.6 s (issue 20, B5)."""
    job = alice.post(
        "/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("a.png", png_bytes())}
    ).json()
    streams = []
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            streams = list(pool.map(lambda _: open_event_stream(api, job["id"]), range(200)))
        channel = api.jobs.events_channel(job["id"])
        wait_until(
            lambda: dict(api.redis.pubsub_numsub(channel)).get(channel, 0) == 200, 30, "200 subscriptions"
        )
        time.sleep(1.5)  # every stream has gone round its wait loop at least once since

        def healthz() -> None:
            assert alice.get("/healthz").status_code == 200

        def get_job() -> None:
            assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"

        # The median of 7 absorbs one scheduling hiccup on a loaded 2-core machine; 100 ms is 28x (healthz) and
        # 56x (GET) below what a thread per stream cost, and no single call may near the probe's 1 s timeout.
        for name, call in (("/healthz", healthz), ("GET /v1/jobs/{id}", get_job)):
            median, worst = median_ms(call)
            assert median < 100 and worst < 1000, (
                f"{name} with 200 streams: median {median:.0f} ms, max {worst:.0f}"
            )
    finally:
        for sock in streams:
            sock.close()
