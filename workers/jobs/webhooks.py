"""Webhook delivery for terminal job transitions: Standard Webhooks signing, verification, SSRF guard.

Receivers verify a delivery with `verify(secret, headers, body)`; the worker signs with `sign(...)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

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
) -> dict[str, Any]:
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


def check_destination(url: str, allow_private: bool) -> None:
    """Refuse URLs that are not http(s) or that resolve to private, loopback, link-local or reserved addresses.

    This keeps a tenant from making the worker call internal services (SSRF). The check resolves the name
    now; a name that re-resolves differently at connect time is a residual risk that a network policy on the
    worker (egress only to the internet) closes.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"webhook_url {url!r} must be an absolute http:// or https:// URL")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise WebhookTransientError(f"webhook host {parts.hostname!r} does not resolve: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise WebhookError(
                f"webhook_url {url!r} resolves to {address}, a private/loopback/link-local address; "
                "refused (set ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS=true only for trusted networks)"
            )


@dataclass(frozen=True)
class WebhookMessage:
    """One delivery: the id stays the same across retries so receivers can drop duplicates."""

    msg_id: str
    body: bytes


# Fields of a job record that receivers see: the API's public view, without the owner and internal flags.
PUBLIC_FIELDS = ("id", "kind", "status", "params", "progress", "created_at", "started_at", "finished_at",
                 "attempts", "error", "result", "webhook_url")  # fmt: skip


def public_view(record: Any) -> dict[str, Any]:
    """The part of a JobRecord that a webhook body carries."""
    data = record.to_dict()
    return {name: data.get(name) for name in PUBLIC_FIELDS}


def build_message(job_public: dict[str, Any], status: str) -> WebhookMessage:
    """The JSON body `{"type": "job.<status>", "timestamp", "data": <job public view>}` and its stable id."""
    payload = {
        "type": f"job.{status}",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": job_public,
    }
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    return WebhookMessage(msg_id=f"msg_{job_public['id']}_{status}", body=body)


def deliver(
    url: str,
    message: WebhookMessage,
    secret: str | bytes | None,
    allow_private: bool,
    timeout_seconds: float = 10.0,
) -> int:
    """POST one message (signed when a secret is configured); return the receiver's 2xx status.

    Raises WebhookTransientError (retry later) or WebhookError (give up) otherwise. Redirects are not
    followed: a redirect could point at an internal address after the destination check.
    """
    check_destination(url, allow_private)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "animegan-webhooks/1",
        "webhook-id": message.msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret:
        headers["webhook-signature"] = sign(secret, message.msg_id, timestamp, message.body)
    try:
        response = httpx.post(
            url, content=message.body, headers=headers, timeout=timeout_seconds, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        raise WebhookTransientError(f"POST {url} failed: {exc!r}") from exc
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
