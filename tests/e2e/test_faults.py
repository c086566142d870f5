"""Faults between the processes, injected for real: object storage paused, refused for a while and refused for
longer than the retry budget (a TCP proxy in front of moto), and Redis restarted with its append-only file.

Each test names what the README's fault table promises for its fault.
"""

from __future__ import annotations

import io
import signal
import time
import zipfile

import pytest
import redis

from tests.e2e.conftest import OWNER, make_service, png_bytes, wait_until
from tests.e2e.test_worker_recovery import write_counts
from tests.faults import RedisServer, TcpProxy
from workers import enqueue, keys
from workers.contracts.batch import chunk_messages
from workers.contracts.images import stylize_message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def storage(s3_endpoint):
    """The proxy every process of this module reaches storage through."""
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def service(request, tmp_path_factory, storage):
    svc = make_service(tmp_path_factory.mktemp("e2e-faults"), "s3", request, s3_endpoint=storage.url)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(autouse=True)
def _fresh_workers_and_flowing_storage(request, storage):
    yield
    storage.heal()
    if "service" in request.fixturenames:
        request.getfixturevalue("service").stop_workers()


def submit_batch(service, total: int, chunk_size: int, side: int = 128) -> tuple[str, list[str]]:
    record, _ = service.jobs.create("batch", OWNER, {"model": "tiny", "size_mode": "original"}, total=total)
    input_keys = []
    for index in range(total):
        key = keys.input(record.id, index, "png")
        service.store.put_bytes(key, png_bytes((side, side), seed=index))
        input_keys.append(key)
    enqueue.send(chunk_messages(record.id, input_keys, chunk_size), app=service.app)
    return record.id, input_keys


def progress(service, job_id: str) -> dict:
    return service.job(job_id).progress


def test_a_storage_pause_mid_batch_delays_it_and_writes_each_output_once(service, storage):
    total = 16
    service.start_worker("pause", queues="stylize")
    job_id, _ = submit_batch(service, total, chunk_size=4)
    wait_until(lambda: progress(service, job_id).get("done", 0) >= 2, 120, "the first images", interval=0.02)
    storage.pause()  # every byte to and from storage is held, as on a frozen storage node
    time.sleep(6)
    held = progress(service, job_id)["done"]
    storage.resume()
    finished = service.wait_status(job_id, {"succeeded", "failed"}, timeout=180)
    assert held < total, "the batch finished before the pause"
    assert finished.status == "succeeded", finished.error
    assert (finished.progress["done"], finished.progress["failed"]) == (total, 0)
    writes = write_counts(service, keys.outputs_prefix(job_id))
    assert {k: v for k, v in writes.items() if k.endswith(".png")} == {
        keys.output(job_id, i, "png"): 1 for i in range(total)
    }


def test_storage_refused_within_the_retry_budget_loses_nothing(service, storage):
    total = 16
    service.start_worker("refused", queues="stylize", ANIMEGAN_S3_MAX_ATTEMPTS="1")
    job_id, _ = submit_batch(service, total, chunk_size=4)
    wait_until(lambda: progress(service, job_id).get("done", 0) >= 2, 120, "the first images", interval=0.02)
    storage.refuse()  # connections refused and open ones cut, for 16 s
    time.sleep(16)
    storage.restore()
    finished = service.wait_status(job_id, {"succeeded", "failed"}, timeout=240)
    assert finished.status == "succeeded", finished.error
    assert (finished.progress["done"], finished.progress["failed"], finished.progress["total"]) == (
        total,
        0,
        total,
    )
    with zipfile.ZipFile(io.BytesIO(service.store.get_bytes(keys.output_archive(job_id)))) as zf:
        assert len(zf.namelist()) == total
    # Every image is stored; one may be written a second time if the outage cut a PUT after storage kept it
    # (same key, same bytes: a retry lands on the same object).
    writes = write_counts(service, keys.outputs_prefix(job_id))
    assert sorted(k for k in writes if k.endswith(".png")) == [
        keys.output(job_id, i, "png") for i in range(total)
    ]


def test_an_outage_longer_than_the_retry_budget_keeps_the_finished_images(service, storage):
    total = 12
    # A 6 s budget (2 s, then 4 s): the outage outlasts it.
    service.start_worker(
        "outage", queues="stylize", ANIMEGAN_S3_MAX_ATTEMPTS="1", ANIMEGAN_TRANSIENT_RETRY_SECONDS="6"
    )
    job_id, _ = submit_batch(service, total, chunk_size=4, side=160)
    wait_until(lambda: progress(service, job_id).get("done", 0) >= 2, 120, "the first images", interval=0.02)
    storage.refuse()
    done_before = progress(service, job_id)["done"]

    def all_accounted() -> bool:
        p = progress(service, job_id)
        return p.get("done", 0) + p.get("failed", 0) >= total

    # Each chunk gives up on its unfinished images; the batch is then finalized by its own task, which keeps
    # retrying storage on a budget of its own: storage comes back within it.
    wait_until(all_accounted, 120, "every chunk to give up or finish")
    storage.restore()
    finished = service.wait_status(job_id, {"succeeded", "partial", "failed"}, timeout=120)
    # Some images failed: the batch ends partial (never succeeded), its failures counted by code.
    assert finished.status == "partial", finished.error
    done, failed = finished.progress["done"], finished.progress["failed"]
    assert done >= done_before >= 2 and failed >= 1 and done + failed == total
    assert finished.result["failures"] == {"storage_unavailable": failed}
    assert finished.error["code"] == "some_images_failed"
    errors = service.jobs.item_errors(job_id)
    assert len(errors) == failed and {e["code"] for e in errors.values()} == {"storage_unavailable"}
    assert {o["index"] for o in finished.result["outputs"]} == set(range(total)) - set(errors)
    with zipfile.ZipFile(io.BytesIO(service.store.get_bytes(keys.output_archive(job_id)))) as zf:
        assert len(zf.namelist()) == done + 1  # the finished images and errors.json


def _ping_after_restart(client: redis.Redis) -> None:
    # The first command after a restart may meet the connection the old server closed.
    wait_until(lambda: _answers(client), 20, "the restarted Redis")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_redis_restart_with_aof_loses_no_queued_job(request, tmp_path, sig):
    server = RedisServer(tmp_path / "redis").start()
    svc = make_service(tmp_path, "local", request, redis_url=server.url)
    try:
        job_ids = []
        for seed in range(5):
            record, _ = svc.jobs.create("stylize", OWNER, {"model": "tiny", "size_mode": "original"}, total=1)
            key = keys.input(record.id, 0, "png")
            svc.store.put_bytes(key, png_bytes((64, 48), seed=seed))
            enqueue.send(stylize_message(record.id, key), app=svc.app)
            job_ids.append(record.id)
        server.stop(sig)  # accepted jobs and their queued tasks exist only in Redis now
        server.start()
        _ping_after_restart(svc.redis)
        svc.start_worker("after-restart", queues="stylize")
        for job_id in job_ids:
            assert svc.wait_status(job_id, {"succeeded", "failed"}, timeout=90).status == "succeeded"

        # A worker that lived through a second restart reconnects and takes new work.
        server.stop(sig)
        server.start()
        _ping_after_restart(svc.redis)
        record, _ = svc.jobs.create("stylize", OWNER, {"model": "tiny", "size_mode": "original"}, total=1)
        key = keys.input(record.id, 0, "png")
        svc.store.put_bytes(key, png_bytes((64, 48), seed=9))
        enqueue.send(stylize_message(record.id, key), app=svc.app)
        assert svc.wait_status(record.id, {"succeeded", "failed"}, timeout=120).status == "succeeded"
    finally:
        svc.close()
        server.stop(signal.SIGKILL)
