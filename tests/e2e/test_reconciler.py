"""A Redis failover that loses a training job's task message: the worker is SIGKILLed mid-segment and its message
deleted from the broker (queue and unacked set), so no redelivery can ever come; `animegan reconcile` finds the
job running with no lease and no task, re-enqueues it, and a fresh worker finishes it from its last checkpoint."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from tests.conftest import ANIMEGAN, training_params, wait_until
from tests.e2e.conftest import OWNER, make_service
from tests.e2e.test_worker_recovery import dataset_zip
from workers import enqueue, keys, redis_keys
from workers.contracts.base import Queues
from workers.contracts.training import segment_message
from workers.reconciler import reconcile_once, stuck_training_jobs

pytestmark = pytest.mark.e2e

DATASET = f"e2e-reconcile-{uuid.uuid4().hex[:8]}"
# Longer than the module's 8 s: on a loaded machine a 4 s segment plus its upload can outlast 8 s, and a
# redelivery of a live segment would count as a lost worker. The lost message here is deleted, never timed out.
WORKER_ENV = {"ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS": "60"}


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp("e2e-reconcile"), "file", request)
    try:
        yield svc
    finally:
        svc.close()


def lose_every_message(client) -> None:
    """What a failover to a replica that never saw them does: the queue and the unacked copies are gone."""
    client.delete(Queues.train.value, redis_keys.KOMBU_UNACKED, f"{redis_keys.KOMBU_UNACKED}_index")


def test_reconciler_requeues_a_training_job_whose_message_a_failover_lost(service):
    service.store.put_bytes(keys.dataset_archive(DATASET, "photos"), dataset_zip(4, seed=1))
    service.store.put_bytes(keys.dataset_archive(DATASET, "styles"), dataset_zip(4, seed=2))
    hyper = {"preset": "v2-hayao", "image_size": 64, "batch_size": 2, "epochs": 20, "init_epochs": 1,
             "base_channels": 8, "max_total_steps": 10}  # fmt: skip
    params = training_params(
        "e2e-reconciled", DATASET, hyper, {"discriminator_channels": 8, "checkpoint_every": 2}
    )
    record, _ = service.jobs.create("train", OWNER, params, total=10)
    first = service.start_worker("train-lost", queues="train", **WORKER_ENV)
    enqueue.send(segment_message(record.id, 0), app=service.app)

    def mid_run() -> bool:
        progress = service.job(record.id).progress
        return progress.get("checkpoint_step", 0) >= 2 and progress.get("step", 0) < 8

    wait_until(mid_run, 180, "a checkpoint in the middle of the run")
    first.kill()
    lose_every_message(service.redis)
    lease = redis_keys.lease(record.id)
    wait_until(lambda: not service.redis.exists(lease), 60, "the dead worker's lease to expire")
    checkpoint = service.job(record.id).progress["checkpoint_step"]

    # A ready worker polls the train queue, but the broker holds nothing of the job: nothing can run it, and
    # the reconciler's own query finds it stuck.
    second = service.start_worker("train-after-failover", queues="train", **WORKER_ENV)
    assert service.redis.llen(Queues.train.value) == 0 and service.redis.hlen(redis_keys.KOMBU_UNACKED) == 0
    assert [r.id for r in stuck_training_jobs(service.jobs, service.redis, 0, time.time())] == [record.id]
    stuck = service.job(record.id)
    assert stuck.status == "running" and stuck.progress["checkpoint_step"] == checkpoint

    proc = subprocess.run(
        [ANIMEGAN, "--verbose", "reconcile", "--grace", "0"],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert record.id in proc.stderr and "1 job(s) re-enqueued" in proc.stderr, proc.stderr[-3000:]
    # A second pass finds the job taken care of (its task queued or running, or its lease held).
    assert reconcile_once(service.jobs, service.redis, service.app, grace_seconds=0) == []

    finished = service.wait_status(record.id, {"succeeded", "failed", "canceled"}, timeout=300)
    assert finished.status == "succeeded", finished.error
    resumed = [s for s in finished.progress["segments"] if s["resumed_from_step"] >= checkpoint]
    assert resumed, finished.progress["segments"]
    assert finished.result["steps"] == 10
    second.stop()
