"""One error type for the API and the handlers that give every error the body {"error": {"code", "message"}}.

FastAPI's own validation errors are rewritten to that shape too, naming the offending field.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from workers.exceptions import StorageError
from workers.json_types import JSONObject

logger = logging.getLogger(__name__)

# Codes for the statuses Starlette raises on its own (unknown route, wrong method).
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media",
}


class ApiError(Exception):
    """An error answered to the client: HTTP status, a stable machine code and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str, ident: str) -> ApiError:
    """404 for a missing id or one owned by another tenant: the same answer, so existence never leaks."""
    return ApiError(404, f"{what}_not_found", f"no {what} {ident!r} found for this API key")


def error_body(code: str, message: str) -> JSONObject:
    return {"error": {"code": code, "message": message}}


def _field_name(loc: tuple | list) -> str:
    # loc is e.g. ("body", "hyperparameters", "epochs"); the source part says nothing to the client.
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path", "header", "form"))


def validation_message(errors: list[JSONObject]) -> str:
    """One readable line per invalid field: `field: what is wrong (got value)`."""
    lines = []
    for err in errors:
        field = _field_name(err.get("loc", ())) or "request"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            lines.append(f"{field}: field required")
        elif "input" in err and not isinstance(err["input"], dict | bytes):
            lines.append(f"{field}: {msg} (got {str(err['input'])[:80]!r})")
        else:
            lines.append(f"{field}: {msg}")
    return "; ".join(lines)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    fields = [_field_name(e.get("loc", ())) for e in errors]
    body = error_body("invalid_parameters", validation_message(errors))
    body["error"]["fields"] = fields
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (JSON that is not UTF-8, a broken multipart body): bad input like
        # any other, so the documented 422 with the shared error shape, not an undocumented 400.
        return JSONResponse(
            error_body("invalid_parameters", f"body: the request body could not be parsed ({exc.detail})"),
            status_code=422,
        )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's Allow lists the methods of the first route whose path matched; a path served by several
        # routes (GET and POST /v1/models) must list them all.
        headers["Allow"] = ", ".join(allowed_methods(request))
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers or None
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path (routes may sit in nested routers)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
    what = "Redis" if isinstance(exc, redis.RedisError) else "object storage"
    logger.warning("%s unavailable on %s %s: %s", what, request.method, request.url.path, exc)
    return JSONResponse(
        error_body("service_unavailable", f"{what} is unreachable ({type(exc).__name__}); retry shortly"),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body(
            "internal_error", f"the server failed on this request ({type(exc).__name__}); retry later"
        ),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception; each of these is only called for the class it is
    # registered with (the ignores say so, not that the handlers are loose).
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, _dependency_down)
    app.add_exception_handler(StorageError, _dependency_down)
    app.add_exception_handler(Exception, _unexpected)
