"""Real worker processes run stylize and batch jobs enqueued as the API does, on local and S3 storage."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from tests.e2e.conftest import BUILTIN_MODEL, OWNER, make_service, png_bytes, wait_until
from workers import enqueue, keys
from workers.contracts.batch import chunk_messages
from workers.contracts.images import stylize_message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["local", "s3"])
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp(f"e2e-{request.param}"), request.param, request)
    try:
        svc.worker = svc.start_worker("images")
        yield svc
    finally:
        svc.close()


def submit_stylize(
    service, data: bytes, model: str = BUILTIN_MODEL, webhook_url: str | None = None, **params
):
    record, _ = service.jobs.create(
        "stylize",
        OWNER,
        {"model": model, "size_mode": "original", **params},
        total=1,
        webhook_url=webhook_url,
    )
    key = keys.input(record.id, 0, "png")
    service.store.put_bytes(key, data)
    enqueue.send(stylize_message(record.id, key), app=service.app)
    return record.id


def submit_batch(service, images: list[bytes], chunk_size: int, **params):
    record, _ = service.jobs.create(
        "batch", OWNER, {"model": BUILTIN_MODEL, "size_mode": "original", **params}, total=len(images)
    )
    input_keys = []
    for index, data in enumerate(images):
        key = keys.input(record.id, index, "png")
        service.store.put_bytes(key, data)
        input_keys.append(key)
    enqueue.send(chunk_messages(record.id, input_keys, chunk_size), app=service.app)
    return record.id


def test_one_image_end_to_end(service):
    job_id = submit_stylize(service, png_bytes((48, 40)))
    record = service.wait_status(job_id, {"succeeded", "failed"})
    assert record.status == "succeeded", record.error
    out = Image.open(io.BytesIO(service.store.get_bytes(record.result["output_key"])))
    assert out.size == (48, 40)
    assert record.started_at is not None and record.finished_at >= record.started_at


def test_batch_of_50_reports_rising_progress_and_writes_every_output(service):
    job_id = submit_batch(service, [png_bytes((64, 48), seed=i) for i in range(50)], chunk_size=5)
    seen: list[int] = []

    def finished() -> bool:
        record = service.job(job_id)
        seen.append(int(record.progress.get("done", 0)))
        return str(record.status) in {"succeeded", "failed"}

    wait_until(finished, 120, f"batch {job_id} to finish", interval=0.02)
    record = service.job(job_id)
    assert record.status == "succeeded", record.error
    assert seen == sorted(seen), "done must never go down"
    assert any(0 < value < 50 for value in seen), f"no intermediate progress observed: {sorted(set(seen))}"
    assert (record.progress["done"], record.progress["total"], record.result["errors"]) == (50, 50, [])
    outputs = [k for k in service.store.list(keys.outputs_prefix(job_id)) if k.endswith(".png")]
    assert outputs == [keys.output(job_id, i, "png") for i in range(50)]
    with zipfile.ZipFile(io.BytesIO(service.store.get_bytes(keys.output_archive(job_id)))) as zf:
        assert len(zf.namelist()) == 50


def test_bad_inputs_fail_their_job_and_the_worker_lives_on(service):
    corrupt = submit_stylize(service, b"\x89PNG\r\n\x1a\n this is not really a png")
    unknown = submit_stylize(service, png_bytes(), model="no-such-model")
    assert service.wait_status(corrupt, {"succeeded", "failed"}).error["code"] == "bad_image"
    assert service.wait_status(unknown, {"succeeded", "failed"}).error["code"] == "unknown_model"
    good = submit_stylize(service, png_bytes(seed=3))
    assert service.wait_status(good, {"succeeded", "failed"}).status == "succeeded"
    assert service.worker.alive()


def test_cancel_of_a_queued_and_of_a_running_job(service):
    queued, _ = service.jobs.create("stylize", OWNER, {"model": BUILTIN_MODEL}, total=1)
    assert service.jobs.cancel(queued.id)
    assert service.job(queued.id).status == "canceled"
    key = keys.input(queued.id, 0, "png")
    service.store.put_bytes(key, png_bytes())
    # A task that was already on the queue when the user canceled: the worker must drop it.
    enqueue.send(stylize_message(queued.id, key), app=service.app)

    # Large enough that the chunk is still running when the cancel lands.
    running = submit_batch(service, [png_bytes((256, 256), seed=i) for i in range(60)], chunk_size=60)
    wait_until(
        lambda: service.job(running).progress.get("done", 0) > 0,
        60,
        "the batch to start producing",
        interval=0.02,
    )
    service.jobs.cancel(running)
    record = service.wait_status(running, {"canceled", "succeeded", "failed"})
    assert record.status == "canceled"
    assert record.progress["done"] < 60
    # The queue is FIFO with one worker: the stale stylize task ran (and was dropped) before the batch.
    assert service.job(queued.id).status == "canceled"
    assert not service.store.exists(keys.output(queued.id, 0, "png"))


class _Hook(BaseHTTPRequestHandler):
    deliveries: list = []
    statuses: list[int] = []  # answers to give, in order; 204 once they run out

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).statuses.pop(0) if type(self).statuses else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_webhook_is_delivered_signed_and_retried_on_completion(service):
    from workers.jobs.webhooks import verify

    # The receiver is down for the first try: the delivery is retried with backoff and the same message id.
    handler = type("Hook", (_Hook,), {"deliveries": [], "statuses": [503]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/done"
        job_id = submit_stylize(service, png_bytes(seed=5), webhook_url=url)
        assert service.wait_status(job_id, {"succeeded", "failed"}).status == "succeeded"
        wait_until(lambda: len(handler.deliveries) == 2, 30, "the retried webhook delivery")
    finally:
        server.shutdown()
        server.server_close()
    (first_headers, _), (headers, body) = handler.deliveries
    assert first_headers["webhook-id"] == headers["webhook-id"] == f"msg_{job_id}_succeeded"
    payload = verify(service.env["ANIMEGAN_WEBHOOK_SECRET"], headers, body)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job_id
    assert payload["data"]["result"]["output_key"] == keys.output(job_id, 0, "png")
