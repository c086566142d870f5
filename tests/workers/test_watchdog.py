"""The worker watchdog: its checks against the real Redis (unit, with a stepped clock), then real worker processes
whose consumer is stopped while tasks wait (the stall it must end), that idle out, and the liveness probe."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ANIMEGAN, wait_until
from workers import enqueue
from workers.contracts.webhooks import webhook_message
from workers.watchdog import EXIT_STALLED, WorkerWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(redis_client, tmp_path, busy=False, **kwargs) -> tuple[WorkerWatchdog, Clock]:
    clock = Clock()
    dog = WorkerWatchdog(redis_client, ["stylize"], tmp_path / "hb", busy=lambda: busy, clock=clock, **kwargs)
    return dog, clock


def test_a_waiting_queue_and_no_task_taken_for_too_long_is_a_stall(redis_client, tmp_path):
    dog, clock = watchdog(redis_client, tmp_path, stall_seconds=60)
    clock.now += 120
    assert dog.check() is None, "an empty queue is not a stall"
    redis_client.rpush("stylize", "task")
    assert dog.check() == EXIT_STALLED
    dog.received()
    assert dog.check() is None, "a task was just taken"
    clock.now += 59
    assert dog.check() is None
    clock.now += 2
    assert dog.check() == EXIT_STALLED
    assert (tmp_path / "hb").is_file()


def test_a_busy_worker_never_stalls_nor_idles_out(redis_client, tmp_path):
    redis_client.rpush("stylize", "task")
    dog, clock = watchdog(redis_client, tmp_path, busy=True, stall_seconds=1, idle_exit_seconds=1)
    clock.now += 3600
    assert dog.check() is None


def test_idle_exit_counts_from_the_last_task(redis_client, tmp_path):
    dog, clock = watchdog(redis_client, tmp_path, idle_exit_seconds=30)
    clock.now += 29
    assert dog.check() is None
    clock.now += 1
    assert dog.check() == 0


def start_worker(redis_url: str, tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    environ.update({
        "ANIMEGAN_REDIS_URL": redis_url,
        "ANIMEGAN_STORAGE_URL": (tmp_path / "storage").as_uri(),
        "ANIMEGAN_DEVICE": "cpu",
        "ANIMEGAN_HEARTBEAT_FILE": str(tmp_path / f"{name}.heartbeat"),
        "ANIMEGAN_LOG_FORMAT": "json",
        **env,
    })  # fmt: skip
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [ANIMEGAN, "worker", "--queues", "webhooks", "--pool", "solo", "--hostname", f"{name}@%h"],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"worker still running after {timeout} s")


def test_a_worker_whose_consumer_stopped_while_tasks_wait_exits_to_be_restarted(redis_url, tmp_path):
    from workers.celery_app import create_celery_app
    from workers.settings import ServiceSettings

    proc = start_worker(redis_url, tmp_path, "stalled", ANIMEGAN_WATCHDOG_STALL_SECONDS="6")
    log = tmp_path / "stalled.log"
    try:
        wait_until(lambda: " ready." in log.read_text(errors="replace"), 90, "the worker to be ready")
        app = create_celery_app(ServiceSettings(redis_url=redis_url))
        # What a stalled consumer looks like from outside: connected, answering, taking nothing.
        replies = app.control.cancel_consumer(
            "webhooks", destination=[f"stalled@{os.uname().nodename}"], reply=True
        )
        assert replies, "the worker did not answer the control command"
        enqueue.send(webhook_message("job-that-waits", "succeeded"), app=app)
        started = time.monotonic()
        status = wait_exit(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert status == EXIT_STALLED, text[-3000:]
    assert time.monotonic() - started < 45
    assert '"level": "ERROR"' in text and "taken no task" in text, text[-3000:]


def test_an_idle_worker_exits_zero_and_its_heartbeat_is_the_liveness_probe(redis_url, tmp_path):
    proc = start_worker(redis_url, tmp_path, "idle", ANIMEGAN_WORKER_IDLE_EXIT_SECONDS="8")
    heartbeat = tmp_path / "idle.heartbeat"
    probe_env = {**os.environ, "ANIMEGAN_HEARTBEAT_FILE": str(heartbeat)}
    try:
        wait_until(heartbeat.is_file, 90, "the heartbeat file")
        alive = subprocess.run([ANIMEGAN, "worker-alive"], env=probe_env, capture_output=True, timeout=60)
        assert alive.returncode == 0, alive.stdout
        assert wait_exit(proc, 90) == 0, (tmp_path / "idle.log").read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    os.utime(heartbeat, (time.time() - 600, time.time() - 600))
    dead = subprocess.run(
        [ANIMEGAN, "worker-alive"], env=probe_env, capture_output=True, text=True, timeout=60
    )
    assert dead.returncode == 1 and "old" in dead.stdout


def test_device_errors_in_a_row_stop_the_worker_even_while_busy(redis_client, tmp_path):
    """DeviceHealth, shared with forked children: N errors in a row set its event, a success in between resets
    the count; the watchdog then stops the worker with status 4 at once."""
    from workers.device_health import EXIT_DEVICE, DeviceHealth, is_device_error

    health = DeviceHealth(max_errors=2)
    dog, _ = watchdog(redis_client, tmp_path, busy=True, device_failed=health.failed)
    health.record_error()
    health.record_success()
    health.record_error()
    assert dog.check() is None and not health.failed.is_set()
    child = os.fork()
    if child == 0:  # a pool child counting its own failure into the parent's health
        health.record_error()
        os._exit(0)
    os.waitpid(child, 0)
    assert health.failed.wait(5) and dog.check() == EXIT_DEVICE

    import torch

    assert is_device_error(torch.AcceleratorError("CUDA error: an illegal memory access was encountered"))
    assert is_device_error(
        RuntimeError("CUDA error: no kernel image is available for execution on the device")
    )
    assert not is_device_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 34.00 GiB"))
    assert not is_device_error(ValueError("CUDA error in a file name"))


def test_each_tick_records_the_worker_as_alive_on_its_queues(redis_client, tmp_path):
    from workers import redis_keys

    dog, _ = watchdog(redis_client, tmp_path)
    dog.check()
    [(member, beat)] = redis_client.zrange(redis_keys.workers_alive("stylize"), 0, -1, withscores=True)
    assert member.endswith(f"/{os.getpid()}") and abs(beat - time.time()) < 30
