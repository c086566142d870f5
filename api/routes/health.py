"""Liveness (/healthz), readiness (/readyz: Redis and storage answer) and Prometheus metrics (/metrics)."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ServicesDep
from api.metrics import registry_for

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis and object storage are reachable",
    responses={503: {"description": "a dependency is down; the body says which"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        services.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"unreachable: {exc}"
    try:
        services.store.ping()
        checks["storage"] = "ok"
    except Exception as exc:  # any backend failure means "not ready"; the message says which and why
        checks["storage"] = f"unreachable: {type(exc).__name__}: {exc}"
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


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(registry_for(services)), media_type=CONTENT_TYPE_LATEST)
