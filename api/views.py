"""A job record's public form (JobPublic and its links), through the job's kind: which links a job has (a result
file, item results, files) is what its JobKind entry offers (workers.contracts.registry), not an if-chain here.
"""

from __future__ import annotations

import time
from typing import cast

from fastapi import Request

from api.deps import Services
from api.schemas import JobLinks, JobPublic, QueuePublic
from workers import queue_positions
from workers.contracts.base import JobKind
from workers.contracts.registry import KINDS
from workers.jobstore import JobRecord, JobStatus


def api_url(services: Services, request: Request, path: str) -> str:
    base = services.settings.public_base_url or str(request.base_url).rstrip("/")
    return f"{base}{path}"


def kind_of(record: JobRecord) -> JobKind | None:
    """The record's kind; None for one this API does not know (written by a newer API in a rolling deploy),
    which is then shown with the links every job has."""
    return KINDS.get(record.kind)


def job_links(services: Services, request: Request, record: JobRecord) -> JobLinks:
    path = f"/v1/jobs/{record.id}"
    kind = kind_of(record)
    has_result = kind is not None and kind.result_file is not None
    has_files = kind is not None and bool(kind.files)
    return JobLinks(
        self=api_url(services, request, path),
        events=api_url(services, request, f"{path}/events"),
        cancel=api_url(services, request, f"{path}/cancel"),
        result=api_url(services, request, f"{path}/result") if has_result else None,
        files=api_url(services, request, f"{path}/files") if has_files else None,
    )


def estimate_args(services: Services, record: JobRecord) -> tuple[str, str, int, list[str], list[str]] | None:
    """What queue_positions.ESTIMATE needs for a queued job: (queue, model, own tasks, keys, args); None otherwise."""
    kind = kind_of(record)
    if record.status != JobStatus.QUEUED or kind is None or record.queue_score is None:
        return None
    model = str(record.params.get("model") or record.params.get("teacher") or queue_positions.ANY_MODEL)
    own = max(1, len(kind.queued_task_ids(record, services.settings)))
    keys = queue_positions.estimate_keys(kind.queue.value, kind.tasks[0], model)
    return kind.queue.value, model, own, keys, [repr(record.queue_score), repr(time.time())]


def queue_estimate(services: Services, record: JobRecord) -> QueuePublic | None:
    """The queued job's position and ETA (one Redis round trip); None when it is not waiting."""
    args = estimate_args(services, record)
    if args is None:
        return None
    queue, model, own, keys, argv = args
    raw = services.redis.eval(queue_positions.ESTIMATE, len(keys), *keys, *argv)
    estimate = queue_positions.build_estimate(queue, model, own, cast(list, raw), float(argv[1]))
    return QueuePublic(**estimate.to_dict())


def job_public(
    services: Services, request: Request, record: JobRecord, queue: QueuePublic | None = None
) -> JobPublic:
    return JobPublic(
        id=record.id,
        kind=record.kind,
        status=record.status.value,
        params=record.params,
        progress=record.progress,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        attempts=record.attempts,
        error=record.error,
        result=record.result,
        webhook_url=record.webhook_url,
        webhook_events_filter=list(record.webhook_events),
        deadline=record.deadline,
        queue=queue,
        links=job_links(services, request, record),
    )
