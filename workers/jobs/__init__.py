"""Plain job functions the Celery tasks call: the shared context, error kinds and lifecycle steps.

Nothing here knows about Celery; tasks.py builds a JobContext once per worker process and passes it in.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from animegan.errors import AnimeGANError

if TYPE_CHECKING:
    from workers.contracts.base import Result
    from workers.jobs.models import ModelCache
    from workers.jobstore import JobRecord, JobStore
    from workers.lease import TrainingLease
    from workers.registry import ModelRegistry
    from workers.settings import WorkerSettings
    from workers.storage import ObjectStore

logger = logging.getLogger(__name__)

Spec = TypeVar("Spec", bound=BaseModel)

# JobStatus values (a str Enum compares equal to these); spelled out so this module imports without Redis code.
TERMINAL = frozenset({"succeeded", "partial", "failed", "canceled", "expired"})


class JobInputError(Exception):
    """Bad input (corrupt image, unknown model, bad dataset): the job fails with `code`, never retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JobCanceled(Exception):
    """The job's cancel flag was seen between images or steps; the job ends as canceled."""


@dataclass
class JobContext:
    """What every job function needs, built once per worker process (clients are not fork-safe)."""

    settings: WorkerSettings
    jobs: JobStore
    store: ObjectStore
    registry: ModelRegistry
    models: ModelCache
    leases: TrainingLease
    device: str  # resolved torch device of this process ("cpu", "cuda", "cuda:1")
    # Called with a job id after this process moved the job to a terminal status (enqueues the webhook).
    on_terminal: Callable[[str], None]
    # Called with a job id when this process started the job (a "start" webhook, if its filter asks for one).
    on_start: Callable[[str], None] = lambda job_id: None
    _storage_id: str | None = None  # this worker's storage marker, read once (storage_id())

    def storage_id(self) -> str | None:
        """The marker id of this worker's storage (workers.storage_identity); None where it has none."""
        if self._storage_id is None:
            from workers.storage_identity import storage_id

            self._storage_id = storage_id(self.store, create=False)
        return self._storage_id


def job_spec(record: JobRecord, spec_type: type[Spec]) -> Spec:
    """The job's params as the spec class the API built them with (workers.contracts); a record that does not
    parse (written by hand, or by an API newer than this worker) fails the job naming the field."""
    try:
        return spec_type.model_validate(record.params)
    except ValidationError as exc:
        problems = "; ".join(
            f"params.{'.'.join(str(part) for part in error['loc']) or '(record)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise JobInputError(
            "bad_params", f"{record.kind} job {record.id} has invalid params: {problems}"
        ) from exc


def begin(ctx: JobContext, job_id: str, redelivered: bool, unit: str = "job") -> JobRecord | None:
    """Start (or resume) work on `unit` of a job (its one task, "chunk:<first index>", "segment:<n>", ...);
    None when there is nothing to do.

    Nothing to do: the record is gone (expired), already terminal, canceled before it started, or the unit's
    redelivery cap is exceeded (then the job fails here, so a poison task stops looping through workers). Lost
    deliveries count per unit and are forgotten when the unit makes progress (JobStore.reset_attempts): four
    failovers over a week of training or a 625-chunk batch cost nothing, a task that dies before any progress
    fails after ANIMEGAN_MAX_REDELIVERIES.
    """
    record = ctx.jobs.get(job_id)
    if record is None:
        from workers import redis_keys

        # Queues are namespaced too, so a task of another deployment reaches this worker only when the two share a
        # broker queue by configuration (a Celery queue set by hand, a namespace changed while tasks were queued).
        logger.warning(
            "job %s has no record in namespace %r (expired, never created, or sent by a deployment with another "
            "ANIMEGAN_NAMESPACE through a shared queue); dropping its task",
            job_id, redis_keys.NAMESPACE,
        )  # fmt: skip
        return None
    if record.status in TERMINAL:
        logger.info("job %s is already %s; nothing to do", job_id, record.status)
        return None
    if redelivered:
        lost = ctx.jobs.add_attempt(job_id, unit)
        where = "this job" if unit == "job" else f"{unit.replace(':', ' ')} of this job"
        if lost > ctx.settings.max_redeliveries:
            message = f"worker lost {lost} times while running {where}, with no progress in between"
            fail(ctx, job_id, "worker_lost", message)
            return None
        logger.warning("job %s redelivered after a lost worker (%s: %d without progress)", job_id, unit, lost)
    if record.storage_id is not None and record.storage_id != ctx.storage_id():
        from workers import redis_keys
        from workers.storage_identity import mismatch_message

        logger.error(
            "job %s: its inputs went to storage %s, this worker reads storage %s (%s); failing it",
            job_id, record.storage_id, ctx.storage_id(), ctx.settings.storage_url,
        )  # fmt: skip
        message = mismatch_message(record.storage_id, ctx.storage_id(), redis_keys.NAMESPACE)
        fail(ctx, job_id, "storage_mismatch", message)
        return None
    if ctx.jobs.is_cancel_requested(job_id):
        cancel(ctx, job_id)
        return None
    was_queued = record.status == "queued"
    ctx.jobs.start(job_id)
    record = ctx.jobs.get(job_id)
    if record is None or record.status != "running":
        return None
    if was_queued:
        ctx.on_start(job_id)
    return record


def check_cancel(ctx: JobContext, job_id: str) -> None:
    """Raise JobCanceled if the user asked to cancel; called between images and between training steps."""
    if ctx.jobs.is_cancel_requested(job_id):
        raise JobCanceled(job_id)


def succeed(ctx: JobContext, job_id: str, result: Result) -> bool:
    """Record success with the kind's typed result (its files are already in storage); True if this call made
    the transition."""
    done = ctx.jobs.succeed(job_id, result.model_dump(mode="json"))
    if done:
        logger.info("job %s succeeded", job_id)
        ctx.on_terminal(job_id)
    return done


def partial(ctx: JobContext, job_id: str, result: Result, code: str, message: str) -> bool:
    """Record a job some of whose items failed: its typed result holds the ones done, `message` sums up the
    failures; True if this call made the transition."""
    done = ctx.jobs.partial(job_id, result.model_dump(mode="json"), code, message)
    if done:
        logger.warning("job %s ended partial: %s", job_id, message)
        ctx.on_terminal(job_id)
    return done


def tenant_message(ctx: JobContext, message: str) -> str:
    """A job's error as its tenant may read it: a worker's scratch paths and the internal storage endpoint are the
    operators' business (they stay in the worker's log), so they are replaced by what they stand for."""
    scratch = re.escape(tempfile.gettempdir().rstrip("/"))
    message = re.sub(rf"{scratch}/[^\s'\"]+", "<the worker's copy of the input>", message)
    for endpoint in {ctx.settings.s3_endpoint_url, ctx.settings.storage_url}:
        if endpoint and endpoint.startswith(("http://", "https://", "file://")):
            message = message.replace(endpoint.rstrip("/"), "<storage>")
    return message


def fail(ctx: JobContext, job_id: str, code: str, message: str) -> bool:
    """Record failure with a machine-readable code and a message that says what to do."""
    public = tenant_message(ctx, message)
    if public != message:
        logger.warning("job %s: failing with %s: %s", job_id, code, message)  # the full text, for operators
    message = public
    done = ctx.jobs.fail(job_id, code, message)
    if done:
        logger.warning("job %s failed: %s: %s", job_id, code, message)
        ctx.on_terminal(job_id)
    return done


def cancel(ctx: JobContext, job_id: str) -> bool:
    """End a running (or still queued) job whose worker stopped at a safe point: canceled when its owner asked,
    expired when its deadline passed (then the items done stay, and a training run's last checkpoint)."""
    if ctx.jobs.stop_reason(job_id) == "deadline":
        return _expire(ctx, job_id)
    done = ctx.jobs.mark_canceled(job_id)
    if done:
        logger.info("job %s canceled", job_id)
        ctx.on_terminal(job_id)
    return done


def _expire(ctx: JobContext, job_id: str) -> bool:
    from workers.jobstore import deadline_text

    record = ctx.jobs.get(job_id)
    if record is None:
        return False
    when = deadline_text(record.deadline) if record.deadline else "its deadline"
    p = record.progress
    if record.status == "queued":
        message = f"the deadline ({when}) passed while the job was queued; it never ran"
    elif "step" in p:
        message = f"the deadline ({when}) passed; training stopped at step {p['step']}, its checkpoint kept"
    else:
        message = (
            f"the deadline ({when}) passed; stopped with {p.get('done', 0)} of {p.get('total', 0)} done "
            f"({p.get('failed', 0)} failed), the finished ones kept"
        )
    done = ctx.jobs.mark_expired(job_id, message)
    if done:
        logger.info("job %s expired: %s", job_id, message)
        ctx.on_terminal(job_id)
    return done


@contextmanager
def recorded_outcome(ctx: JobContext, job_id: str) -> Iterator[None]:
    """The one place a job's own exceptions become its recorded outcome: JobCanceled ends it as canceled,
    JobInputError fails it with its code, the library's AnimeGANError fails it as bad_input. Anything else
    propagates (workers.tasks.runtime.job_outcome retries transient faults and fails the rest)."""
    try:
        yield
    except JobCanceled:
        cancel(ctx, job_id)
    except JobInputError as exc:
        fail(ctx, job_id, exc.code, exc.message)
    except AnimeGANError as exc:
        fail(ctx, job_id, "bad_input", str(exc))
