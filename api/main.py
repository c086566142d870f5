"""The FastAPI app: `create_app(settings)` for tests and `app` for `uvicorn api.main:app` (settings from ANIMEGAN_*).

Clients (Redis, storage) are created in the lifespan, never at import; importing this module loads no torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deadlines import sweep_deadlines
from api.deps import Services
from api.errors import error_body, install_error_handlers
from api.metrics import MetricsServer, RequestMetricsMiddleware, registry_for
from api.request_logs import JobLogContextMiddleware, use_json_logs
from api.routes import batches, exports, health, jobs, models, stylize, trainings, uploads, videos
from api.routes.web import install_web
from api.schemas import ErrorResponse
from api.settings import ApiSettings
from workers.contracts.training import TrainingHyperparameters
from workers.settings import load_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """Photos in, anime-style images out, as jobs: submit, watch progress, fetch results; train new styles.

Authenticate with `Authorization: Bearer <key>` (create keys with `animegan keys create --tenant NAME`).
Every error has the body `{"error": {"code": "...", "message": "..."}}`. Creates accept an `Idempotency-Key`
header: the same key with the same body returns the same job, with another body 409.
"""


# Starlette keeps a multipart part in memory up to this size and spools a larger one to the temporary folder.
SPOOL_THRESHOLD_BYTES = 1024 * 1024
# POST /v1/trainings copies each spooled form zip into its staging folder while it checks it: twice the body.
_DISK_FACTOR = {"/v1/trainings": 2}


class BodyLimitMiddleware:
    """413 for request bodies above `limit` bytes: at once from Content-Length, else while the body streams in.

    With `spool_budget`, also a bound on the temporary disk that bodies in flight take in this process (issue 20:
    on a read-only root /tmp is an emptyDir with a sizeLimit, and a pod whose emptyDir outgrows it is evicted with
    every request and event stream on it). A body that may reach the disk reserves its bytes (twice for a
    training) before it is read, or while it streams when it has no Content-Length; one that does not fit gets
    503 `server_busy` with Retry-After, and the reservation ends with the request."""

    def __init__(self, app: ASGIApp, limit: int, spool_budget: int | None = None):
        self.app = app
        self.limit = limit
        self.spool_budget = spool_budget
        self.spooled = 0  # bytes reserved by the bodies in flight (one event loop: no lock needed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        factor = _DISK_FACTOR.get(scope.get("path", ""), 1)
        held = 0

        def reserve(size: int) -> bool:
            nonlocal held
            if self.spool_budget is None or size <= held:
                return True
            if self.spooled + size - held > self.spool_budget:
                return False
            self.spooled += size - held
            held = size
            return True

        try:
            known = int(declared) if declared is not None and declared.isdigit() else None
            if known is not None and known > SPOOL_THRESHOLD_BYTES and not reserve(known * factor):
                await self._busy(send)
                return
            seen = 0

            async def limited_receive() -> Message:
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(
                        413, f"request body is larger than the {self.limit}-byte limit; use /v1/uploads"
                    )
                if known is None and seen > SPOOL_THRESHOLD_BYTES and not reserve(seen * factor):
                    raise HTTPException(503, self._busy_message(), headers={"Retry-After": "5"})
                return message

            await self.app(scope, limited_receive, send)
        finally:
            self.spooled -= held

    def _busy_message(self) -> str:
        return (
            f"this API process holds {self.spooled} bytes of uploads on its temporary disk (budget "
            f"{self.spool_budget}, ANIMEGAN_MAX_SPOOL_BYTES); retry shortly, or send large files through "
            "POST /v1/uploads"
        )

    async def _busy(self, send: Send) -> None:
        body = json.dumps(error_body("server_busy", self._busy_message())).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"5"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _refuse(self, send: Send, declared: int) -> None:
        message = (
            f"request body of {declared} bytes is above the {self.limit}-byte limit; "
            "send large files through POST /v1/uploads"
        )
        body = json.dumps(error_body("payload_too_large", message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the app; settings default to the environment (ANIMEGAN_*), validated before anything starts."""
    settings = settings or load_settings(ApiSettings)
    # Pillow's own bomb check would refuse images above twice its limit while reading the header, with its
    # number instead of ours; api.images.inspect_image checks every header against max_image_pixels before
    # any decoding, so the configured limit is the one that decides and the one the 422 names.
    Image.MAX_IMAGE_PIXELS = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = app.state.services = Services.connect(settings)
        metrics_server = None
        if settings.metrics_port is not None:
            token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
            metrics_server = MetricsServer(
                registry_for(services), settings.metrics_host, settings.metrics_port, token
            ).start()
            logger.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_server.port)
        sweeper = asyncio.create_task(sweep_deadlines(services, settings.deadline_sweep_seconds))
        logger.info(
            "API ready (storage %s, auth %s)", settings.storage_url, "off" if settings.auth_disabled else "on"
        )
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        if metrics_server is not None:
            metrics_server.stop()
        await services.close()

    app = FastAPI(
        title="AnimeGAN job service",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: blank offline. install_web serves
        # Swagger UI from local files instead.
        docs_url=None,
        redoc_url=None,
        responses={
            401: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            429: {"model": ErrorResponse},
        },
    )
    _document_form_json(app)
    install_error_handlers(app)
    for module in (stylize, batches, videos, uploads, trainings, jobs, models, exports, health):
        app.include_router(module.router)
    install_web(app)
    app.add_middleware(RequestMetricsMiddleware)
    if settings.log_format == "json":
        use_json_logs()
        app.add_middleware(JobLogContextMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, limit=settings.max_request_bytes, spool_budget=settings.max_spool_bytes
    )
    return app


def _document_form_json(app: FastAPI) -> None:
    """Add TrainingHyperparameters (sent as a JSON string form field) to the schema's components."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            hyper = TrainingHyperparameters.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(hyper.pop("$defs", {}))
            components["TrainingHyperparameters"] = hyper
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


class _LazyApp:
    """`api.main:app` for uvicorn: builds the app from the environment on first use, not at import."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


app = _LazyApp()
