"""Webhook delivery for terminal job transitions: Standard Webhooks signing, verification, SSRF guard.

Receivers verify a delivery with `verify(secret, headers, body)`; the worker signs with `sign(...)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from workers.json_types import JSONObject
from workers.webhook_targets import (
    WebhookTarget,
    WebhookTargetRefused,
    WebhookTargetUnresolved,
    resolve_webhook_target,
)

if TYPE_CHECKING:
    from workers.jobstore import JobRecord

logger = logging.getLogger(__name__)

# A receiver rejects deliveries whose timestamp is further than this from its clock (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300
# Status codes after which a later try may succeed; any other 4xx means the receiver refuses the message.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
SECRET_PREFIX = "whsec_"


class WebhookError(Exception):
    """A delivery that must not be retried (refused destination, receiver rejected the message)."""


class WebhookTransientError(Exception):
    """A delivery that may succeed later (network error, timeout, 5xx, 429)."""


class WebhookVerificationError(Exception):
    """A received webhook whose signature or timestamp does not check out."""


def _secret_bytes(secret: str | bytes) -> bytes:
    """Standard Webhooks secrets are `whsec_<base64>`; any other string is used as raw UTF-8 key bytes."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode()


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> JSONObject:
    """Check a received delivery and return its decoded JSON body.

    `headers` may be any case-insensitive mapping or a plain dict (keys are matched lower-cased). Raises
    WebhookVerificationError naming what failed: a missing header, a stale timestamp or no matching signature.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp_text = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]!r}") from exc
    try:
        timestamp = int(timestamp_text)
    except ValueError as exc:
        raise WebhookVerificationError(f"webhook-timestamp {timestamp_text!r} is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookVerificationError(
            f"webhook-timestamp {timestamp} is {abs(current - timestamp):.0f} s from now "
            f"(tolerance {tolerance_seconds} s): a replay or a skewed clock"
        )
    expected = sign(secret, msg_id, timestamp, body)
    # The header may carry several space-separated signatures (secret rotation); any match is enough.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise WebhookVerificationError(f"no signature in webhook-signature matches message {msg_id!r}")
    return json.loads(body)


def check_destination(url: str, allow_private: bool) -> WebhookTarget:
    """The checked destination of `url` (workers.webhook_targets decides, as the API does at submit time).

    Raises WebhookError for a refused URL (never retried) and WebhookTransientError when the name does not
    resolve now.
    """
    try:
        return resolve_webhook_target(url, allow_private)
    except WebhookTargetRefused as exc:
        raise WebhookError(str(exc)) from exc
    except WebhookTargetUnresolved as exc:
        raise WebhookTransientError(str(exc)) from exc


@dataclass(frozen=True)
class WebhookMessage:
    """One delivery: the id stays the same across retries so receivers can drop duplicates."""

    msg_id: str
    body: bytes


# Fields of a job record that receivers see: the API's public view, without the owner and internal flags.
PUBLIC_FIELDS = ("id", "kind", "status", "params", "progress", "created_at", "started_at", "finished_at",
                 "attempts", "error", "result", "webhook_url", "webhook_events", "deadline")  # fmt: skip


def public_view(record: JobRecord) -> JSONObject:
    """The part of a JobRecord that a webhook body carries."""
    data = record.to_dict()
    return {name: data.get(name) for name in PUBLIC_FIELDS}


def build_message(job_public: JSONObject, status: str, seq: int = 0) -> WebhookMessage:
    """The JSON body `{"type": "job.<event>", "timestamp", "data": <job public view>}` and its stable id; the event
    is the terminal status, "start" or "progress" (whose `seq` numbers each delivery apart)."""
    payload = {
        "type": f"job.{status}",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": job_public,
    }
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    suffix = f"{status}_{seq}" if seq else status
    return WebhookMessage(msg_id=f"msg_{job_public['id']}_{suffix}", body=body)


def deliver(
    url: str,
    message: WebhookMessage,
    secret: str | bytes | None,
    allow_private: bool,
    timeout_seconds: float = 10.0,
) -> int:
    """POST one message (signed when a secret is configured); return the receiver's 2xx status.

    Raises WebhookTransientError (retry later) or WebhookError (give up) otherwise. The connection goes to an
    address that was checked, never to a second resolution of the name (DNS rebinding: a name that answers a
    public address to the check and 127.0.0.1 to the connect); the name still goes in the Host header and as
    the TLS server name, so virtual hosts and certificates work as usual. Redirects are not followed: a
    redirect could point at an internal address after the destination check.
    """
    target = check_destination(url, allow_private)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "animegan-webhooks/1",
        "webhook-id": message.msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret:
        headers["webhook-signature"] = sign(secret, message.msg_id, timestamp, message.body)
    default_port = 443 if target.scheme == "https" else 80
    headers["host"] = target.host if target.port == default_port else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    response = None
    with httpx.Client(timeout=timeout_seconds, follow_redirects=False) as client:
        for address in target.addresses:
            pinned = httpx.URL(url).copy_with(host=str(address))
            try:
                response = client.post(pinned, content=message.body, headers=headers, extensions=extensions)
                break
            except httpx.ConnectError as exc:
                # Like a browser, try the name's next checked address before calling the receiver down.
                error: httpx.HTTPError = exc
            except httpx.HTTPError as exc:
                raise WebhookTransientError(f"POST {url} failed: {exc!r}") from exc
    if response is None:
        raise WebhookTransientError(f"POST {url} failed: {error!r}") from error
    if 200 <= response.status_code < 300:
        logger.info("webhook %s delivered to %s (%d)", message.msg_id, url, response.status_code)
        return response.status_code
    if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
        raise WebhookTransientError(f"POST {url} answered {response.status_code}")
    raise WebhookError(
        f"POST {url} answered {response.status_code}; the receiver refused message {message.msg_id}"
    )


def backoff_seconds(attempt: int, base_seconds: float, cap_seconds: float = 3600.0) -> float:
    """Exponential backoff for try number `attempt` (0-based): base, 2*base, 4*base, ... capped."""
    return min(cap_seconds, base_seconds * (2**attempt))
