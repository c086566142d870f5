"""The task layer: no torch at import, the worker CLI's validation, and how job_outcome records each failure kind."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from celery.exceptions import Retry

from animegan.errors import ImageError
from workers.exceptions import StorageError
from workers.jobs import JobCanceled, JobContext, JobInputError

OWNER = "tenant-a"


def _env(redis_url: str, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")}
    env.update({"ANIMEGAN_REDIS_URL": redis_url, "ANIMEGAN_STORAGE_URL": (tmp_path / "s").as_uri()})
    return env


def test_importing_tasks_and_the_cli_loads_no_torch(redis_url, tmp_path):
    # Each kind's tasks are defined in its own task module (JobKind.task_module), which registers them all.
    code = (
        "import sys, workers.cli, workers.tasks; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'animegan.inference' not in sys.modules; "
        "from workers.celery_app import get_app; "
        "from workers.contracts.registry import KINDS, TASK_QUEUES; "
        "tasks = get_app().tasks; "
        "assert set(TASK_QUEUES) <= set(tasks), set(tasks); "
        "assert {'animegan.stylize', 'animegan.batch_chunk', 'animegan.finalize_batch', 'animegan.train_segment', "
        "'animegan.video_segment', 'animegan.join_video', 'animegan.export', 'animegan.deliver_webhook', "
        "'animegan.fetch_inputs'} == set(TASK_QUEUES); "
        "wrong = [(t, k.name) for k in KINDS.values() for t in k.tasks if tasks[t].__module__ != k.task_module]; "
        "assert not wrong, wrong"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(redis_url, tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_worker_cli_refuses_unknown_queues_and_bad_concurrency(redis_url, tmp_path):
    animegan = [os.path.join(os.path.dirname(sys.executable), "animegan")]
    bad_queue = subprocess.run(
        [*animegan, "worker", "--queues", "stylize,gpu"],
        env=_env(redis_url, tmp_path),
        capture_output=True,
        text=True,
    )
    assert bad_queue.returncode == 2
    assert "unknown queue(s) ['gpu']" in bad_queue.stderr
    bad_concurrency = subprocess.run(
        [*animegan, "worker", "--concurrency", "0"],
        env=_env(redis_url, tmp_path),
        capture_output=True,
        text=True,
    )
    assert bad_concurrency.returncode == 2
    assert "--concurrency must be >= 1" in bad_concurrency.stderr


class _Task:
    """The two things job_outcome reads from a bound Celery task: request.retries and retry()."""

    def __init__(self, retries: int) -> None:
        self.request = SimpleNamespace(retries=retries)
        self.retried_with: dict | None = None

    def retry(self, exc, countdown, max_retries):
        self.retried_with = {"countdown": countdown, "max_retries": max_retries}
        return Retry(exc=exc, when=countdown)


@pytest.fixture
def ctx(redis_client, redis_url, tmp_path, monkeypatch) -> JobContext:
    import workers.tasks.runtime as tasks
    from workers.jobstore import JobStore
    from workers.settings import WorkerSettings, load_settings

    settings = load_settings(WorkerSettings, redis_url=redis_url, storage_url=(tmp_path / "s").as_uri())
    context = JobContext(
        settings=settings,
        jobs=JobStore.from_settings(redis_client, settings),
        store=None,
        registry=None,
        models=None,
        leases=None,
        device="cpu",
        on_terminal=lambda job_id: None,
    )  # type: ignore[arg-type]  # job_outcome only records outcomes in the JobStore
    monkeypatch.setattr(tasks, "_context", context)
    return context


def _running_job(ctx) -> str:
    record, _ = ctx.jobs.create("stylize", OWNER, {"model": "tiny"}, total=1)
    ctx.jobs.start(record.id)
    return record.id


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (JobInputError("bad_image", "photo.png: truncated"), "failed", "bad_image"),
        (ImageError("photo.png: 9000x9000 is above the pixel limit"), "failed", "bad_input"),
        (JobCanceled("x"), "canceled", None),
        (RuntimeError("boom"), "failed", "internal_error"),
        # Out of memory is the job's size, not a lost worker: failed at once with its own code, never retried.
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 34.00 GiB"),
            "failed",
            "out_of_memory",
        ),
        (MemoryError(), "failed", "out_of_memory"),
    ],
)
def test_job_outcome_records_each_kind_of_failure(ctx, error, status, code):
    from workers.tasks.runtime import job_outcome

    job_id = _running_job(ctx)
    with job_outcome(_Task(0), job_id):
        raise error
    record = ctx.jobs.get(job_id)
    assert record.status == status
    assert (record.error or {}).get("code") == code


def test_transient_faults_retry_with_backoff_then_fail(ctx):
    from workers.tasks.runtime import job_outcome

    job_id = _running_job(ctx)
    task = _Task(retries=2)
    with pytest.raises(Retry), job_outcome(task, job_id):
        raise StorageError("S3 answered 503")
    assert task.retried_with == {"countdown": 8.0, "max_retries": 3}
    assert ctx.jobs.get(job_id).status == "running"

    # The default budget (900 s) is spent after 2+4+8+16+32 s and then fourteen waits of 60 s (=902 s).
    with pytest.raises(Retry), job_outcome(_Task(retries=18), job_id):
        raise StorageError("S3 answered 503")
    assert ctx.jobs.get(job_id).status == "running"
    with job_outcome(_Task(retries=19), job_id):
        raise StorageError("S3 answered 503 at http://10.0.0.5:9000/bucket")
    record = ctx.jobs.get(job_id)
    assert (record.status, record.error["code"]) == ("failed", "transient_error")
    assert "902 s" in record.error["message"] and "10.0.0.5" not in record.error["message"]


def test_the_retry_budget_is_a_setting_and_a_give_up_hook_replaces_failing(ctx, monkeypatch):
    from workers.tasks.runtime import job_outcome, transient_delay

    monkeypatch.setattr(ctx.settings, "transient_retry_seconds", 6)
    assert [transient_delay(i, ctx.settings) for i in range(3)] == [2.0, 4.0, 8.0]
    job_id = _running_job(ctx)
    given_up: list[str] = []
    with job_outcome(_Task(retries=2), job_id, give_up=given_up.append):
        raise StorageError("refused")
    assert len(given_up) == 1 and "about 6 s" in given_up[0]
    assert ctx.jobs.get(job_id).status == "running"  # the hook decides what happens to the job
