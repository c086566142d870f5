"""What every Celery task shares: the process's JobContext, the warm-shutdown flag, and job_outcome, which
turns whatever a job function raises into a recorded outcome (retrying transient faults with backoff).

Importing this module loads no torch: the job modules (and torch) are imported in the worker child, so
CUDA is never initialised in the parent before fork.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis
from celery import Task
from celery.exceptions import Retry
from celery.signals import worker_init, worker_process_init, worker_shutting_down
from kombu.exceptions import OperationalError

from workers import enqueue, job_metrics, redis_keys
from workers.contracts.webhooks import PROGRESS_WEBHOOK_SECONDS, WebhookEvent, wants, webhook_message
from workers.device_health import DeviceHealth, is_device_error
from workers.exceptions import StorageError
from workers.settings import WorkerSettings, load_settings

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from workers.jobs import JobContext

logger = logging.getLogger(__name__)

# Transient faults: storage or Redis hiccups. Retried with exponential backoff for
# ANIMEGAN_TRANSIENT_RETRY_SECONDS, then the job fails (a batch keeps its finished images).
TRANSIENT = (StorageError, redis.RedisError, ConnectionError, TimeoutError)
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 60.0

_context: JobContext | None = None  # this process's, built on first use
_shutdown: Event | None = None  # set by the parent on warm shutdown, inherited by children
_device_health: DeviceHealth | None = None  # shared with the parent (animegan worker), inherited by children


def use_device_health(health: DeviceHealth) -> None:
    """Count device errors into `health` (created by the worker command before the pool forks)."""
    global _device_health
    _device_health = health


@worker_init.connect
def _create_shutdown_flag(**_: object) -> None:
    """Created in the parent before the pool forks so every child shares it."""
    global _shutdown
    _shutdown = multiprocessing.get_context("fork").Event()
    from workers import queue_positions
    from workers.redis_connection import connect

    # The parent drops revoked tasks (children track their own with their own client: build_context).
    queue_positions.track_with(connect(load_settings(WorkerSettings), decode_responses=True))


@worker_shutting_down.connect
def _announce_shutdown(**_: object) -> None:
    """Warm shutdown (SIGTERM): training segments stop at the next step, checkpoint and requeue."""
    if _shutdown is not None:
        _shutdown.set()


def shutdown_requested() -> bool:
    return _shutdown is not None and _shutdown.is_set()


@worker_process_init.connect
def _init_child(**_: object) -> None:
    """Per child: torch threads and device, then the job context (Redis, storage, model cache)."""
    context()


def context() -> JobContext:
    """The process's JobContext; built lazily so solo pools and tests get one too."""
    global _context
    if _context is None:
        _context = build_context(load_settings(WorkerSettings))
    return _context


def build_context(settings: WorkerSettings) -> JobContext:
    from workers.jobs import JobContext
    from workers.jobs.models import ModelCache
    from workers.jobstore import JobStore
    from workers.lease import TrainingLease
    from workers.registry import ModelRegistry
    from workers.storage import open_store

    device = settings.device
    try:
        import torch
    except ModuleNotFoundError:
        # The API image (no torch), which the webhook workers run on: this process never runs a model.
        logger.info("worker process ready without torch (webhook deliveries only)")
        device = "cpu" if device == "auto" else device
    else:
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        logger.info("worker process ready: device=%s torch threads=%d", device, torch.get_num_threads())
    from workers.redis_connection import connect

    client = connect(settings, decode_responses=True)
    from workers import queue_positions

    queue_positions.track_with(client)  # tasks this process sends and runs count toward queue positions
    store = open_store(settings)
    jobs = JobStore.from_settings(client, settings)
    jobs.on_progress = _notify_progress
    registry = ModelRegistry(client)
    models = ModelCache(
        store, registry, settings.models_dir, device=device, capacity=settings.model_cache_size
    )
    return JobContext(
        settings=settings,
        jobs=jobs,
        store=store,
        registry=registry,
        models=models,
        leases=TrainingLease(client),
        device=device,
        on_terminal=_notify_terminal,
        on_start=_notify_start,
    )


def _notify_terminal(job_id: str) -> None:
    """Off the hot path: a terminal job with a webhook_url gets a delivery task on the webhooks queue."""
    try:
        record = context().jobs.get(job_id)
        if record is not None and record.webhook_url:
            enqueue.send(webhook_message(job_id, str(record.status)))
    except (redis.RedisError, OperationalError) as exc:
        # The job's outcome is recorded; only its notification is lost, which must not fail the task.
        logger.error("job %s: could not enqueue its webhook: %s", job_id, exc)


def _notify_start(job_id: str) -> None:
    """A job this process started: a "start" delivery when its webhook_events_filter asks for one."""
    _notify_event(job_id, WebhookEvent.start)


def _notify_progress(job_id: str) -> None:
    """Progress moved: a "progress" delivery when the filter asks, at most one per PROGRESS_WEBHOOK_SECONDS."""
    _notify_event(job_id, WebhookEvent.progress)


def _notify_event(job_id: str, event: WebhookEvent) -> None:
    try:
        client = context().jobs.redis
        url, events = client.hmget(redis_keys.job(job_id), ["webhook_url", "webhook_events"])
        chosen = tuple(str(events).split(",")) if events else ()  # the client decodes responses
        if not url or not wants(chosen, event):
            return
        seq = 0
        if event == WebhookEvent.progress:
            gate = redis_keys.webhook_progress_gate(job_id)
            if not client.set(gate, "1", nx=True, px=int(PROGRESS_WEBHOOK_SECONDS * 1000)):
                return  # one went out less than PROGRESS_WEBHOOK_SECONDS ago
            seq = int(client.incr(redis_keys.webhook_progress_seq(job_id)))
            client.expire(redis_keys.webhook_progress_seq(job_id), context().jobs.ttl_seconds)
        enqueue.send(webhook_message(job_id, event.value, seq=seq))
    except (redis.RedisError, OperationalError) as exc:
        logger.error("job %s: could not enqueue its %s webhook: %s", job_id, event.value, exc)


def redelivered(task: Task) -> bool:
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
    from workers.jobs import fail, recorded_outcome

    ctx = context()
    try:
        with recorded_outcome(ctx, job_id):
            yield
        if _device_health is not None:
            _device_health.record_success()
    except Retry:
        raise
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
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            # The job's size, not a fault of this worker: retrying it would only repeat it. The memory is freed
            # as the exception unwinds; the worker goes on.
            logger.error("job %s: out of memory: %s", job_id, exc)
            gpu = "GPU " if "CUDA" in str(exc) else ""
            message = (
                f"ran out of {gpu}memory ({str(exc)[:200] or type(exc).__name__}); lower image_size, "
                "batch_size or base_channels (training), or send smaller images"
            )
            fail(ctx, job_id, "out_of_memory", message)
            return
        if is_device_error(exc) and _device_health is not None:
            _device_failed(task, ctx, job_id, exc)  # raises Retry, or failed the job
            return
        logger.exception("job %s: unexpected error", job_id)
        fail(ctx, job_id, "internal_error", f"{type(exc).__name__} (details in the operators' logs)")


def _device_failed(task: Task, ctx: JobContext, job_id: str, exc: Exception) -> None:
    """The GPU failed, not the job: count it toward this worker's device errors (which stop the worker) and retry
    the task, on another worker once this one stops; a job that fails on every device it meets fails itself."""
    from workers.jobs import fail

    assert _device_health is not None
    in_a_row = _device_health.record_error()
    try:
        ctx.jobs.redis.hincrby(redis_keys.METRICS, job_metrics.DEVICE_ERRORS_FIELD, 1)
    except redis.RedisError as error:
        logger.warning("could not count the device error: %s", error)
    retries = task.request.retries
    logger.error("job %s: device error (%d in a row on this worker): %s", job_id, in_a_row, exc)
    if retries >= ctx.settings.max_redeliveries:
        message = (
            f"the GPU failed on each of {retries + 1} tries ({type(exc).__name__}: {str(exc)[:200]}); "
            "if it repeats, this input may trigger it"
        )
        fail(ctx, job_id, "device_error", message)
        return
    raise task.retry(
        exc=exc, countdown=transient_delay(retries, ctx.settings), max_retries=retries + 1
    ) from exc
