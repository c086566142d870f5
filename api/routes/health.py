"""Liveness (/healthz), readiness (/readyz: Redis and storage answer) and Prometheus metrics (/metrics)."""

from __future__ import annotations

import hmac
import logging

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ServicesDep
from api.errors import ApiError
from api.metrics import registry_for
from api.schemas import ErrorResponse

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


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer ANIMEGAN_METRICS_TOKEN; off without it)",
    response_class=Response,
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
def metrics(request: Request, services: ServicesDep) -> Response:
    token = services.settings.metrics_token
    if token is None:
        # Job counts of every tenant are not for any caller: off unless the operator sets a token.
        raise ApiError(404, "metrics_disabled", "metrics are off; set ANIMEGAN_METRICS_TOKEN to turn them on")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token.get_secret_value()):
        raise ApiError(
            401,
            "invalid_metrics_token",
            "send ANIMEGAN_METRICS_TOKEN as 'Authorization: Bearer <token>' (Prometheus: authorization)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Response(generate_latest(registry_for(services)), media_type=CONTENT_TYPE_LATEST)
