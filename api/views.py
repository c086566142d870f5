"""A job record's public form (JobPublic and its links), through the job's kind: which links a job has (a result
file, item results, files) is what its JobKind entry offers (workers.contracts.registry), not an if-chain here.
"""

from __future__ import annotations

from fastapi import Request

from api.deps import Services
from api.schemas import JobLinks, JobPublic
from workers.contracts.base import JobKind
from workers.contracts.registry import KINDS
from workers.jobstore import JobRecord


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


def job_public(services: Services, request: Request, record: JobRecord) -> JobPublic:
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
        links=job_links(services, request, record),
    )
