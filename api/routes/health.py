"""Liveness (/healthz) and readiness (/readyz: Redis and storage answer); metrics are on their own port
(api.metrics.MetricsServer), never on the public one."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    # async: answered on the event loop, never queued behind the thread pool that sync routes share.
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis is reachable (object storage is reported, not required)",
    responses={503: {"description": "Redis is down; the body says why"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    """503 only when Redis is down: without it this replica can answer nothing. A storage outage is the same for
    every replica, so failing readiness on it would take the whole API out of the Service, status reads and
    cancels included; it is reported as "degraded" instead (creates and results answer 503 on their own)."""
    timeout = services.settings.readiness_timeout_seconds
    checks: dict[str, str] = {}
    try:
        services.probe_redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"unreachable: {exc}"
    try:
        services.store.ping(timeout_seconds=timeout)
        checks["storage"] = "ok"
    except Exception as exc:  # any backend failure means "not ready"; the message says which and why
        checks["storage"] = f"unreachable within {timeout:g} s: {type(exc).__name__}: {exc}"
    problems = "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok")
    if checks["redis"] != "ok":
        logger.warning("not ready: %s", checks)
        body = {
            "status": "unavailable",
            "checks": checks,
            "error": {"code": "not_ready", "message": problems},
        }
        return JSONResponse(body, status_code=503)
    if problems:
        logger.warning("ready but degraded: %s", checks)
        return JSONResponse({"status": "degraded", "checks": checks})
    return JSONResponse({"status": "ready", "checks": checks})
