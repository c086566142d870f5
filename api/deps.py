"""Request dependencies (`Annotated` aliases that tests can override): settings, Redis, storage, job records,
the model registry, and the caller's tenant with the per-key rate limit applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry
from redis import Redis

from api.auth import tenant_for_token
from api.errors import ApiError
from api.limits import ActiveJobSlots, RateLimiter
from api.settings import ApiSettings
from workers import queue_positions
from workers.celery_app import configure_app
from workers.exceptions import StorageError
from workers.jobstore import AsyncJobEvents, JobStore
from workers.redis_connection import connect, connect_async
from workers.registry import ModelRegistry
from workers.storage import ObjectStore, open_store
from workers.storage_identity import storage_id

logger = logging.getLogger(__name__)

# The tenant every request acts as when ANIMEGAN_AUTH_DISABLED is set.
LOCAL_TENANT = "local"


@dataclass
class Services:
    """Clients created once per API process at start-up (never at import) and shared by all requests."""

    settings: ApiSettings
    redis: Redis
    store: ObjectStore
    jobs: JobStore
    registry: ModelRegistry
    rate: RateLimiter
    slots: ActiveJobSlots
    probe_redis: Redis  # short timeouts, for /readyz only
    job_events: AsyncJobEvents  # redis.asyncio: event streams wait on the event loop, not in threads
    storage_id: str | None = (
        None  # this deployment's storage marker (workers.storage_identity), stamped on jobs
    )
    metrics_registry: CollectorRegistry | None = (
        None  # api.metrics.registry_for builds it on the first scrape
    )

    @classmethod
    def connect(cls, settings: ApiSettings) -> Services:
        client = connect(settings, decode_responses=True, socket_timeout=10, socket_connect_timeout=5)
        jobs = JobStore.from_settings(client, settings)
        queue_positions.track_with(client)  # the tasks this replica sends count toward queue positions
        # Enqueues go through this app, configured with the API's broker settings (not re-read from env).
        configure_app(settings)
        store = open_store(settings)
        try:
            marker = storage_id(store, create=True)
        except StorageError as exc:  # readiness reports the storage; jobs are stamped once it answers
            logger.warning("storage marker not read: %s", exc)
            marker = None
        return cls(
            settings=settings,
            redis=client,
            store=store,
            storage_id=marker,
            jobs=jobs,
            registry=ModelRegistry(client),
            rate=RateLimiter(client, settings.rate_limit_requests, settings.rate_limit_window_seconds),
            slots=ActiveJobSlots(client, settings.max_active_jobs, lambda job_id: _is_active(jobs, job_id)),
            probe_redis=connect(
                settings,
                socket_timeout=settings.readiness_timeout_seconds,
                socket_connect_timeout=settings.readiness_timeout_seconds,
            ),
            # No socket_timeout: a subscribed connection is silent until an event comes.
            job_events=AsyncJobEvents(
                connect_async(
                    settings,
                    decode_responses=True,
                    socket_connect_timeout=5,
                    # A connection per open stream, plus the record reads between their events.
                    max_connections=settings.max_event_streams + 50,
                ),
                settings.max_event_streams,
            ),
        )

    async def close(self) -> None:
        self.redis.close()
        self.probe_redis.close()
        await self.job_events.redis.aclose()


def _is_active(jobs: JobStore, job_id: str) -> bool:
    record = jobs.get(job_id)
    return record is not None and not record.status.is_terminal


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.services.settings


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_tenant(request: Request, services: Annotated[Services, Depends(get_services)]) -> str:
    """The tenant of the request's bearer key, after counting the request against its rate limit."""
    if services.settings.auth_disabled:
        tenant = LOCAL_TENANT
    else:
        token = _bearer(request)
        if token is None:
            raise ApiError(
                401,
                "unauthenticated",
                "send an API key as 'Authorization: Bearer <key>'; create one with `animegan keys create`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = tenant_for_token(services.redis, token)
        if found is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is unknown or revoked; create a new one with `animegan keys create --tenant NAME`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        tenant = found
    services.rate.hit(tenant)
    request.state.tenant = tenant
    return tenant


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
Tenant = Annotated[str, Depends(require_tenant)]
