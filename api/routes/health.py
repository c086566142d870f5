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
    summary="Readiness: Redis and object storage are reachable",
    responses={503: {"description": "a dependency is down; the body says which"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
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
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        logger.warning("not ready: %s", checks)
        body = {
            "status": "unavailable",
            "checks": checks,
            "error": {
                "code": "not_ready",
                "message": "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
            },
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
