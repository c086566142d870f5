"""Thin Celery tasks: parse the payload, call a plain job function from workers.jobs, record the outcome.

Importing this module loads no torch: the job modules (and torch) are imported in the worker child, so
CUDA is never initialised in the parent before fork.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry
from celery.signals import worker_init, worker_process_init, worker_shutting_down
from kombu.exceptions import OperationalError

from workers import contracts
from workers.celery_app import app
from workers.exceptions import StorageError
from workers.settings import WorkerSettings, load_settings

logger = logging.getLogger(__name__)

# Transient faults: storage or Redis hiccups. Retried with exponential backoff for
# ANIMEGAN_TRANSIENT_RETRY_SECONDS, then the job fails (a batch keeps its finished images).
TRANSIENT = (StorageError, redis.RedisError, ConnectionError, TimeoutError)
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 60.0
# A busy training lease is retried this often; the holder finishes its segment or its lease expires.
BUSY_LEASE_COUNTDOWN_SECONDS = 5

_context: Any = None  # workers.jobs.JobContext of this process, built on first use
_shutdown: Any = None  # multiprocessing.Event set by the parent on warm shutdown, inherited by children


@worker_init.connect
def _create_shutdown_flag(**_: Any) -> None:
    """Created in the parent before the pool forks so every child shares it."""
    global _shutdown
    _shutdown = multiprocessing.get_context("fork").Event()


@worker_shutting_down.connect
def _announce_shutdown(**_: Any) -> None:
    """Warm shutdown (SIGTERM): training segments stop at the next step, checkpoint and requeue."""
    if _shutdown is not None:
        _shutdown.set()


def shutdown_requested() -> bool:
    return _shutdown is not None and _shutdown.is_set()


@worker_process_init.connect
def _init_child(**_: Any) -> None:
    """Per child: torch threads and device, then the job context (Redis, storage, model cache)."""
    context()


def context() -> Any:
    """The process's JobContext; built lazily so solo pools and tests get one too."""
    global _context
    if _context is None:
        _context = build_context(load_settings(WorkerSettings))
    return _context


def build_context(settings: WorkerSettings) -> Any:
    import torch

    from workers.jobs import JobContext
    from workers.jobs.models import ModelCache
    from workers.jobstore import JobStore
    from workers.lease import TrainingLease
    from workers.registry import ModelRegistry
    from workers.storage import open_store

    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from workers.redis_connection import connect

    client = connect(settings, decode_responses=True)
    store = open_store(settings)
    jobs = JobStore.from_settings(client, settings)
    registry = ModelRegistry(client)
    models = ModelCache(
        store, registry, settings.models_dir, device=device, capacity=settings.model_cache_size
    )
    logger.info("worker process ready: device=%s torch threads=%d", device, torch.get_num_threads())
    return JobContext(
        settings=settings,
        jobs=jobs,
        store=store,
        registry=registry,
        models=models,
        leases=TrainingLease(client),
        device=device,
        on_terminal=_notify_terminal,
    )


def _notify_terminal(job_id: str) -> None:
    """Off the hot path: a terminal job with a webhook_url gets a delivery task on the webhooks queue."""
    try:
        record = context().jobs.get(job_id)
        if record is not None and record.webhook_url:
            contracts.enqueue_webhook(job_id, str(record.status))
    except (redis.RedisError, OperationalError) as exc:
        # The job's outcome is recorded; only its notification is lost, which must not fail the task.
        logger.error("job %s: could not enqueue its webhook: %s", job_id, exc)


def _redelivered(task: Task) -> bool:
    """True when the broker handed this message out again (its worker died before acking it)."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def transient_delay(attempt: int, settings: WorkerSettings) -> float:
    """Countdown before retry number `attempt` (0-based): 2, 4, 8, ... s, at most 60 s and half the broker's
    visibility timeout (a countdown longer than that would get the task handed to a second worker)."""
    cap = min(RETRY_CAP_SECONDS, settings.visibility_timeout_seconds / 2)
    return min(cap, RETRY_BASE_SECONDS * 2**attempt)


@contextmanager
def job_outcome(task: Task, job_id: str, give_up: Callable[[str], None] | None = None) -> Iterator[None]:
    """Turn whatever a job function raises into a recorded outcome; nothing escapes to kill the worker.

    `give_up(message)` replaces failing the job when transient faults outlast the retry budget (a batch chunk
    fails only its unfinished images).
    """
    from animegan.errors import AnimeGANError
    from workers.jobs import JobCanceled, JobInputError, cancel, fail

    ctx = context()
    try:
        yield
    except Retry:
        raise
    except JobCanceled:
        cancel(ctx, job_id)
    except JobInputError as exc:
        fail(ctx, job_id, exc.code, exc.message)
    except AnimeGANError as exc:
        fail(ctx, job_id, "bad_input", str(exc))
    except TRANSIENT as exc:
        retries = task.request.retries
        waited = sum(transient_delay(i, ctx.settings) for i in range(retries))
        if waited >= ctx.settings.transient_retry_seconds:
            logger.error("job %s: transient fault outlasted the retry budget: %s", job_id, exc)
            # The details (endpoints, keys) are for the operators' logs; the job says what kind of fault.
            message = (
                f"object storage or Redis stayed unreachable for about {waited:.0f} s "
                f"({type(exc).__name__}); gave up after {retries} retries"
            )
            if give_up is not None:
                give_up(message)
            else:
                fail(ctx, job_id, "transient_error", message)
            return
        delay = transient_delay(retries, ctx.settings)
        logger.warning("job %s: transient fault (%s); retry in %.0f s", job_id, exc, delay)
        # The budget above decides when to stop; Celery's own cap (None would mean the task's default, 3)
        # must never fire first.
        raise task.retry(exc=exc, countdown=delay, max_retries=retries + 1) from exc
    except Exception as exc:
        logger.exception("job %s: unexpected error", job_id)
        fail(ctx, job_id, "internal_error", f"{type(exc).__name__} (details in the operators' logs)")


@app.task(name=contracts.TaskNames.stylize, bind=True)
def stylize(self: Task, payload: dict[str, Any]) -> None:
    p = contracts.StylizePayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.stylize import run_stylize

        run_stylize(context(), p.job_id, p.input_key, redelivered=_redelivered(self))


@app.task(name=contracts.TaskNames.batch_chunk, bind=True)
def batch_chunk(self: Task, payload: dict[str, Any]) -> None:
    p = contracts.BatchChunkPayload.model_validate(payload)

    def give_up(message: str) -> None:
        # Storage outlasted the budget: this chunk's unfinished images fail, the finished ones (of this and
        # every other chunk) stay, and the batch is finalized by a task with a retry budget of its own.
        from workers.jobs.batch import fail_unfinished

        fail_unfinished(context(), p.job_id, p.indices, "storage_unavailable", message)
        contracts.enqueue_finalize_batch(p.job_id)

    with job_outcome(self, p.job_id, give_up):
        from workers.jobs.batch import run_chunk

        items = list(zip(p.indices, p.input_keys, strict=True))
        run_chunk(context(), p.job_id, items, redelivered=_redelivered(self))


@app.task(name=contracts.TaskNames.finalize_batch, bind=True)
def finalize_batch(self: Task, payload: dict[str, Any]) -> None:
    """Builds results.zip and ends a batch whose last chunk gave up on storage (batch_chunk's give_up)."""
    p = contracts.FinalizeBatchPayload.model_validate(payload)

    def give_up(message: str) -> None:
        from workers.jobs import fail

        fail(context(), p.job_id, "storage_unavailable", f"{message}; results.zip could not be written, the "
             f"finished images stay available one by one at /v1/jobs/{p.job_id}/results/<index>")  # fmt: skip

    with job_outcome(self, p.job_id, give_up):
        from workers.jobs.batch import maybe_finalize

        maybe_finalize(context(), p.job_id)


@app.task(name=contracts.TaskNames.train_segment, bind=True)
def train_segment(self: Task, payload: dict[str, Any]) -> None:
    p = contracts.TrainSegmentPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.train import SegmentOutcome, run_segment

        outcome = run_segment(
            context(),
            p.job_id,
            p.segment,
            redelivered=_redelivered(self),
            shutdown_requested=shutdown_requested,
        )
        if outcome == SegmentOutcome.paused:
            contracts.enqueue_train_segment(p.job_id, p.segment + 1)
        elif outcome == SegmentOutcome.busy:
            logger.info(
                "job %s: lease busy; segment %d retried in %d s",
                p.job_id,
                p.segment,
                BUSY_LEASE_COUNTDOWN_SECONDS,
            )
            contracts.enqueue_train_segment(p.job_id, p.segment, countdown=BUSY_LEASE_COUNTDOWN_SECONDS)


@app.task(name=contracts.TaskNames.video_segment, bind=True)
def video_segment(self: Task, payload: dict[str, Any]) -> None:
    p = contracts.VideoSegmentPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.video import run_video_segment

        if run_video_segment(context(), p.job_id, p.segment, redelivered=_redelivered(self)):
            contracts.enqueue_join_video(p.job_id)


@app.task(name=contracts.TaskNames.join_video, bind=True)
def join_video(self: Task, payload: dict[str, Any]) -> None:
    p = contracts.JoinVideoPayload.model_validate(payload)
    with job_outcome(self, p.job_id):
        from workers.jobs.video import run_join

        run_join(context(), p.job_id)


@app.task(name=contracts.TaskNames.deliver_webhook, bind=True)
def deliver_webhook(self: Task, payload: dict[str, Any]) -> None:
    from workers.jobs.webhooks import (
        WebhookError,
        WebhookTransientError,
        backoff_seconds,
        build_message,
        deliver,
        public_view,
    )

    p = contracts.WebhookPayload.model_validate(payload)
    ctx = context()
    record = ctx.jobs.get(p.job_id)
    if record is None or not record.webhook_url:
        logger.info("job %s: no record or no webhook_url; nothing to deliver", p.job_id)
        return
    settings: WorkerSettings = ctx.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    message = build_message(public_view(record), str(record.status))
    try:
        deliver(
            record.webhook_url,
            message,
            secret,
            settings.allow_private_webhooks,
            settings.webhook_timeout_seconds,
        )
    except WebhookError as exc:
        logger.warning("job %s: webhook not delivered: %s", p.job_id, exc)
    except WebhookTransientError as exc:
        tries = self.request.retries + 1
        if tries >= settings.webhook_max_attempts:
            logger.error("job %s: webhook given up after %d tries: %s", p.job_id, tries, exc)
            return
        delay = backoff_seconds(self.request.retries, base_seconds=RETRY_BASE_SECONDS)
        logger.info("job %s: webhook try %d failed (%s); next in %.0f s", p.job_id, tries, exc, delay)
        raise self.retry(exc=exc, countdown=delay, max_retries=settings.webhook_max_attempts - 1) from exc
