"""What every create route takes besides its own fields, written once for all kinds: `Prefer: wait[=N]` (a
synchronous answer), `Cancel-After` or a `deadline` field (when the job expires) and the webhook event filter;
and WaitingCreateRoute, which holds a create's answer on the event loop (no thread) until the job ends or the
wait runs out.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api.errors import ApiError
from api.events import wait_for_end
from api.json_bodies import FormShape, json_as_multipart
from api.schemas import JobForm
from api.views import job_public
from workers.contracts.webhooks import WEBHOOK_EVENTS, WebhookEvent

logger = logging.getLogger(__name__)

# The longest `Prefer: wait=N` honoured; a plain `Prefer: wait` waits this long.
MAX_WAIT_SECONDS = 60
# The furthest a deadline may lie ahead (a week: longer than any training run here, shorter than a record's life).
MAX_DEADLINE_SECONDS = 7 * 24 * 3600
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_prefer_wait(header: str | None) -> float | None:
    """Seconds of `Prefer: wait` / `wait=N` (RFC 7240; other preferences in the header are ignored); None without
    one. A value that is not a whole number of seconds 0..MAX_WAIT_SECONDS is a 422 naming it."""
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return float(MAX_WAIT_SECONDS)
        if not value.isdigit() or int(value) > MAX_WAIT_SECONDS:
            raise ApiError(
                422,
                "invalid_prefer_wait",
                f"Prefer: wait={value}: N must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}",
            )
        return float(value)
    return None


def parse_duration(text: str) -> float:
    """Seconds of a duration such as `90s`, `5m`, `1h30m` or a bare number of seconds; ValueError otherwise."""
    text = text.strip().lower()
    if text.isdigit():
        return float(text)
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 5m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _check_deadline(deadline: float, now: float, where: str) -> float:
    if deadline <= now:
        raise ApiError(422, "invalid_deadline", f"{where}: the deadline has already passed")
    if deadline - now > MAX_DEADLINE_SECONDS:
        raise ApiError(
            422, "invalid_deadline", f"{where}: at most {MAX_DEADLINE_SECONDS // 86400} days ahead"
        )
    return deadline


@dataclass(frozen=True)
class JobOptions:
    """A create's options shared by every kind: the absolute deadline and the webhook events to deliver."""

    deadline: float | None = None  # epoch seconds; None: no deadline
    webhook_events: tuple[WebhookEvent, ...] = ()  # empty: the default (the terminal event only)

    def with_form(self, form: JobForm) -> JobOptions:
        """Add the form's `deadline` and `webhook_events_filter`; one deadline only (header or field)."""
        deadline, events = form.deadline_epoch, form.webhook_events_filter
        if deadline is not None and self.deadline is not None:
            raise ApiError(422, "invalid_deadline", "Cancel-After, deadline: send one of them, not both")
        if deadline is not None:
            deadline = _check_deadline(deadline, time.time(), "deadline")
        return replace(
            self,
            deadline=self.deadline if deadline is None else deadline,
            webhook_events=tuple(sorted(set(events or ()), key=WEBHOOK_EVENTS.index)),
        )


def job_options(
    prefer: Annotated[
        str | None,
        Header(
            alias="Prefer",
            description=f"`wait` or `wait=N` (N <= {MAX_WAIT_SECONDS} s): answer with the finished job (200, "
            "Preference-Applied) if it ends within N seconds, else the usual 202",
        ),
    ] = None,
    cancel_after: Annotated[
        str | None,
        Header(
            alias="Cancel-After",
            max_length=32,
            description="a duration (90s, 5m, 1h30m): the job expires then; queued, it never runs; "
            "running, it is stopped (training checkpoints first, a batch keeps its images done)",
        ),
    ] = None,
) -> JobOptions:
    parse_prefer_wait(prefer)  # a bad value is a 422 before anything is stored; the route class waits
    if cancel_after is None:
        return JobOptions()
    try:
        seconds = parse_duration(cancel_after)
    except ValueError as exc:
        raise ApiError(422, "invalid_deadline", f"Cancel-After: {exc}") from exc
    if seconds <= 0:
        raise ApiError(422, "invalid_deadline", "Cancel-After: the duration must be above 0 s")
    now = time.time()
    return JobOptions(deadline=_check_deadline(now + seconds, now, "Cancel-After"))


JobOptionsDep = Annotated[JobOptions, Depends(job_options)]


class WaitingCreateRoute(APIRoute):
    """A create route whose answer waits for the job with `Prefer: wait`: the route's own handler creates the
    job (in the thread pool, as before), then this awaits the job's end on redis.asyncio pub/sub, holding no
    thread, and answers 200 with the finished job and `Preference-Applied: wait=N`; a job still running after N
    seconds is answered as without the header (202, or 200 for an idempotent replay)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        create = super().get_route_handler()
        shape = FormShape.of(self)
        # The JSON body beside the multipart one in the schema (FastAPI merges openapi_extra into the operation).
        self.openapi_extra = {**(self.openapi_extra or {}), **shape.openapi_body()}

        async def handler(request: Request) -> Response:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            # An empty body is a form with every field left out (an export takes only optional fields); the
            # route's own validation names a required one that is missing.
            empty = (
                request.headers.get("content-length", "0") == "0"
                and "transfer-encoding" not in request.headers
            )
            if content_type == "application/json" or content_type.endswith("+json"):
                request = await json_as_multipart(request, shape, json_body_limit(request))
            elif content_type not in ("multipart/form-data", "application/x-www-form-urlencoded") and not (
                empty and not content_type
            ):
                raise ApiError(
                    415,
                    "unsupported_media_type",
                    f"{request.url.path} takes a multipart/form-data or an application/json body (fields and "
                    f"files: /docs), not {content_type or 'an empty content type'}",
                )
            try:
                wait = parse_prefer_wait(request.headers.get("prefer"))
            except ApiError:
                wait = None  # the route's job_options dependency answers the 422, before any job exists
            response = await create(request)
            if wait is None or response.status_code not in (200, 202):
                return response
            return await _waited(request, response, wait)

        return handler


def json_body_limit(request: Request) -> int:
    """The largest JSON body: a base64 data: URI of the largest image file, plus room for the fields."""
    return request.app.state.services.settings.max_upload_bytes * 4 // 3 + 64 * 1024


async def _waited(request: Request, response: Response, wait: float) -> Response:
    services = request.app.state.services
    job_id = json.loads(bytes(response.body))["id"]
    record = await wait_for_end(services.job_events, job_id, wait)
    if record is None:  # still running, or no room for one more wait on this replica
        return response
    body = job_public(services, request, record).model_dump(mode="json")
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
    }
    headers["Preference-Applied"] = f"wait={int(wait)}"
    return JSONResponse(body, status_code=200, headers=headers)
