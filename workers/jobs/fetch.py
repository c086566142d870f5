"""Inputs by URL: download what a create named by `https://` URL into the key its job reads, then start the job.

The rule for which URLs may be called is the webhook deliveries' (workers.webhook_targets): http(s) only, hosts
that resolve to public addresses only (unless ANIMEGAN_ALLOW_PRIVATE_INPUT_URLS), and the connection goes to the
address that was checked, never to a second resolution of the name (DNS rebinding). A redirect is followed only
after its own target passes the same check. Size and time are bounded while the body streams in. Every failure
fails the job with a message that names the field and the URL; nothing is retried (the URL is the caller's).
"""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import httpx
from PIL import Image, UnidentifiedImageError

from workers import enqueue, media
from workers.contracts.fetch import FETCH_CONCURRENCY, FetchPayload, RemoteInput
from workers.jobs import TERMINAL, JobContext, JobInputError, cancel
from workers.webhook_targets import WebhookTargetRefused, WebhookTargetUnresolved, resolve_webhook_target

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPTED = frozenset(name.upper() for name in media.INPUT_IMAGE_FORMATS)
SWITCH = "ANIMEGAN_ALLOW_PRIVATE_INPUT_URLS"


def run_fetch(ctx: JobContext, payload: FetchPayload) -> None:
    """Fetch every input of the job (a few at once), store each at its key, then send the job's own tasks."""
    job_id = payload.job_id
    record = ctx.jobs.get(job_id)
    if record is None or record.status in TERMINAL:
        logger.info("job %s: no record or already ended; its inputs are not fetched", job_id)
        return
    if ctx.jobs.is_cancel_requested(job_id):
        cancel(ctx, job_id)
        return
    started = time.monotonic()
    workers = min(FETCH_CONCURRENCY, len(payload.inputs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        sizes = list(pool.map(lambda item: _fetch_and_store(ctx, item), payload.inputs))
    if ctx.jobs.is_cancel_requested(job_id):
        cancel(ctx, job_id)
        return
    enqueue.send(payload.follow_ups())
    logger.info(
        "job %s: fetched %d input(s), %d bytes, in %.2f s; its tasks sent",
        job_id, len(sizes), sum(sizes), time.monotonic() - started,
    )  # fmt: skip


def _fetch_and_store(ctx: JobContext, item: RemoteInput) -> int:
    data, content_type = download(
        item.url,
        item.max_bytes,
        ctx.settings.fetch_timeout_seconds,
        ctx.settings.allow_private_input_urls,
        item.field,
    )
    if item.image:
        content_type = check_image(data, item, ctx.settings.max_image_pixels)
    ctx.store.put_bytes(item.key, data, content_type=content_type)
    return len(data)


def check_image(data: bytes, item: RemoteInput, max_pixels: int) -> str:
    """The content type of an image this service decodes; a JobInputError naming the URL otherwise (the job's own
    decode checks again, this gives the error the URL instead of a storage key)."""
    where = f"{item.field} {item.url}"
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format or "", image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise JobInputError("unsupported_format", f"{where}: not an image ({type(exc).__name__})") from exc
    if fmt not in _ACCEPTED:
        accepted = ", ".join(sorted(_ACCEPTED))
        raise JobInputError("unsupported_format", f"{where}: a {fmt} image; send one of {accepted}")
    if width * height > max_pixels:
        raise JobInputError(
            "too_many_pixels", f"{where}: {width}x{height} is above the limit of {max_pixels} pixels"
        )
    return Image.MIME.get(fmt, media.OCTET_STREAM)


def download(
    url: str, max_bytes: int, timeout_seconds: float, allow_private: bool, field: str = "url"
) -> tuple[bytes, str]:
    """GET `url` (following up to MAX_REDIRECTS checked redirects) within `timeout_seconds` and `max_bytes`;
    (body, content type). Raises JobInputError naming `field` and the URL for every way it can fail."""
    deadline = time.monotonic() + timeout_seconds
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response_or_next = _get_once(current, url, max_bytes, deadline, allow_private, field)
        if isinstance(response_or_next, str):
            current = response_or_next
            continue
        return response_or_next
    raise JobInputError("input_fetch_failed", f"{field} {url}: more than {MAX_REDIRECTS} redirects")


def _get_once(
    url: str, original: str, max_bytes: int, deadline: float, allow_private: bool, field: str
) -> tuple[bytes, str] | str:
    """One GET to a checked address: the body and its type, or the next URL of a redirect."""
    where = f"{field} {original}"
    try:
        target = resolve_webhook_target(url, allow_private, field=field, switch=SWITCH)
    except WebhookTargetRefused as exc:
        raise JobInputError("input_url_not_allowed", str(exc)) from exc
    except WebhookTargetUnresolved as exc:
        raise JobInputError("input_fetch_failed", str(exc)) from exc
    default_port = 443 if target.scheme == "https" else 80
    headers = {
        "host": target.host if target.port == default_port else f"{target.host}:{target.port}",
        "user-agent": "animegan-inputs/1",
        "accept": "*/*",
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    error: Exception | None = None
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        pinned = httpx.URL(url).copy_with(host=str(address))
        try:
            with (
                httpx.Client(timeout=remaining, follow_redirects=False) as client,
                client.stream("GET", pinned, headers=headers, extensions=extensions) as response,
            ):
                return _answer(response, url, where, max_bytes, deadline)
        except httpx.ConnectError as exc:
            error = exc  # the name's next checked address, as a browser would
        except httpx.TimeoutException as exc:
            raise JobInputError(
                "input_fetch_failed", f"{where}: did not download within the time limit ({exc})"
            ) from exc
        except httpx.HTTPError as exc:
            raise JobInputError("input_fetch_failed", f"{where}: {type(exc).__name__}: {exc}") from exc
    reason = f"could not connect ({error})" if error is not None else "did not download within the time limit"
    raise JobInputError("input_fetch_failed", f"{where}: {reason}")


def _answer(
    response: httpx.Response, url: str, where: str, max_bytes: int, deadline: float
) -> tuple[bytes, str] | str:
    """The body of a 200 (streamed within the limits), or the next URL of a redirect."""
    if response.status_code in _REDIRECTS and "location" in response.headers:
        return urljoin(url, response.headers["location"])
    if response.status_code != 200:
        raise JobInputError("input_fetch_failed", f"{where}: the server answered {response.status_code}")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise JobInputError(
            "input_too_large", f"{where}: {declared} bytes is above the {max_bytes}-byte limit"
        )
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise JobInputError("input_too_large", f"{where}: more than the {max_bytes}-byte limit")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the download ran past its time limit")
    return bytes(body), response.headers.get("content-type", media.OCTET_STREAM)
