"""Service metrics after real jobs: a real worker runs them, and the API's metrics listener reports what the
job transitions counted (finished jobs by status, queued ones, run times, images)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import ApiProcess
from tests.e2e.conftest import OWNER, make_service, png_bytes
from tests.e2e.test_worker_images import submit_batch, submit_stylize

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-metrics")
    svc = make_service(root, "local", request)
    api = None
    try:
        svc.start_worker("metrics", queues="stylize")
        api = ApiProcess(svc.env, root / "api.log").wait_ready()
        svc.api = api
        yield svc
    finally:
        if api is not None:
            api.stop()
        svc.close()


def metrics(service) -> dict[str, float]:
    text = httpx.get(service.api.metrics_url, timeout=30).text
    return {m[0]: float(m[1]) for m in re.findall(r"^(animegan_\S+) (\S+)$", text, re.MULTILINE)}


def test_figures_after_jobs_ran_through_a_real_worker(service):
    good = [submit_stylize(service, png_bytes(seed=i)) for i in range(2)]
    bad = submit_stylize(service, b"\x89PNG\r\n\x1a\n not really a png")
    batch = submit_batch(service, [png_bytes(seed=5 + i) for i in range(3)], chunk_size=2)
    waiting, _ = service.jobs.create("stylize", OWNER, {"model": "tiny"}, total=1)  # never enqueued
    dropped, _ = service.jobs.create("stylize", OWNER, {"model": "tiny"}, total=1)
    assert service.jobs.cancel(dropped.id)
    for job_id in [*good, bad, batch]:
        service.wait_status(job_id, {"succeeded", "failed", "canceled"})

    got = metrics(service)
    assert got['animegan_jobs_finished_total{kind="stylize",status="succeeded"}'] == 2
    assert got['animegan_jobs_finished_total{kind="stylize",status="failed"}'] == 1
    assert got['animegan_jobs_finished_total{kind="stylize",status="canceled"}'] == 1
    assert got['animegan_jobs_finished_total{kind="batch",status="succeeded"}'] == 1
    assert got['animegan_jobs{kind="stylize",status="queued"}'] == 1  # `waiting`
    assert got['animegan_jobs{kind="stylize",status="running"}'] == 0
    assert got['animegan_jobs{kind="batch",status="queued"}'] == 0
    # Every job that ran has a run time; the canceled one never started.
    assert got['animegan_job_duration_seconds_count{kind="stylize"}'] == 3
    assert got['animegan_job_duration_seconds_bucket{kind="batch",le="+Inf"}'] == 1
    assert got["animegan_images_total"] == 5
    assert got["animegan_images_per_second"] == pytest.approx(5 / 300)
    assert got['animegan_queue_depth{queue="stylize"}'] == 0
