"""A GPU worker whose device is unusable: it exits at start (status 4) when its device cannot compute, and a
worker whose device starts failing (injected: every forward pass raises torch.AcceleratorError, as CUDA does
after an Xid error) stops after ANIMEGAN_MAX_DEVICE_ERRORS failures in a row, its jobs retried elsewhere."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ANIMEGAN
from tests.e2e.conftest import OWNER, make_service, png_bytes, wait_until
from workers import enqueue, keys
from workers.contracts.images import stylize_message

pytestmark = pytest.mark.e2e

FAULT_HOOKS = Path(__file__).with_name("fault_hooks")


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp("e2e-device"), "local", request)
    try:
        yield svc
    finally:
        svc.close()


def test_a_worker_whose_cuda_device_is_unusable_exits_at_start(service):
    """cuda:99 exists on no machine (and no CUDA at all on a CPU-only one): the probe fails and the worker exits
    4 before it takes any task, naming what the image needs."""
    env = {**service.env, "ANIMEGAN_DEVICE": "cuda:99"}
    started = time.monotonic()
    proc = subprocess.run(
        [ANIMEGAN, "worker", "--queues", "stylize"], env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "device probe failed" in proc.stderr and "driver >= 580" in proc.stderr, proc.stderr[-3000:]
    assert "ready." not in proc.stderr, "the worker consumed before its device was checked"
    assert time.monotonic() - started < 150


def test_a_worker_whose_device_fails_jobs_in_a_row_stops_and_its_jobs_finish_elsewhere(service):
    jobs = []
    for index in range(4):
        record, _ = service.jobs.create("stylize", OWNER, {"model": "tiny", "size_mode": "original"}, total=1)
        key = keys.input(record.id, 0, "png")
        service.store.put_bytes(key, png_bytes(seed=index))
        jobs.append((record.id, key))
    broken = service.start_worker(
        "broken-gpu",
        queues="stylize",
        ANIMEGAN_MAX_DEVICE_ERRORS="2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(FAULT_HOOKS), os.environ.get("PYTHONPATH")])),
        FAULT_DEVICE_ERROR="1",
    )
    for job_id, key in jobs:
        enqueue.send(stylize_message(job_id, key), app=service.app)
    wait_until(lambda: not broken.alive(), 90, "the worker with the failing device to stop")
    assert broken.proc.returncode == 4, broken.log()[-3000:]
    log = broken.log()
    assert log.count("device error (") == 2, log[-3000:]
    assert "stopping" in log
    for job_id, _ in jobs:
        assert service.job(job_id).status in ("queued", "running"), service.job(job_id).error

    service.start_worker("healthy-gpu", queues="stylize")
    for job_id, _ in jobs:
        finished = service.wait_status(job_id, {"succeeded", "failed"}, timeout=120)
        assert finished.status == "succeeded", finished.error
