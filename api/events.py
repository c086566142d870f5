"""Server-sent events of one job: its current state first, then the JobStore's pub/sub events as they come,
ending after a terminal status (with a last `state` event holding the final record).

Wire format per event: `event: state|progress|status|queue` and one `data:` line of JSON; `: keepalive` comments
keep idle streams open through proxies. While the job waits, a `queue` event carries its position and ETA
whenever they change (checked each POLL_SECONDS).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request

from workers.jobstore import AsyncJobEvents, JobRecord, JobStatus
from workers.json_types import JSONObject

logger = logging.getLogger(__name__)

# How long one wait for a pub/sub message lasts (on the event loop, no thread); bounds how late a disconnect
# is noticed.
POLL_SECONDS = 1.0


def sse(event: str, data: JSONObject) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# A queued job's estimate (the `queue` event's data), read on the event loop; None once it no longer waits.
Estimate = Callable[[str], Awaitable[JSONObject | None]]


def _moved(current: JSONObject, last: JSONObject | None) -> bool:
    """Whether a queue estimate is worth another event: the position or worker count changed, or the ETA by 1 s."""
    if last is None or current.get("position") != last.get("position"):
        return True
    if current.get("workers") != last.get("workers"):
        return True
    new, old = current.get("starts_at"), last.get("starts_at")
    return (new is None) != (old is None) or (
        isinstance(new, float) and isinstance(old, float) and abs(new - old) >= 1.0
    )


def _is_terminal_event(message: JSONObject) -> bool:
    status = message.get("status")
    return message.get("event") == "status" and status in {s.value for s in JobStatus if s.is_terminal}


async def job_event_stream(
    events: AsyncJobEvents,
    job_id: str,
    request: Request,
    render: Callable[[JobRecord], JSONObject],
    keepalive_seconds: float,
    estimate: Estimate | None = None,
) -> AsyncIterator[bytes]:
    """Yield SSE frames for `job_id` (whose ownership the caller checked) until it ends or the client leaves.

    Every wait is an await on redis.asyncio: an open stream costs a Redis connection and no thread, so
    hundreds of streams leave the thread pool (sync routes, /readyz) free."""
    if events.open_streams >= events.max_streams:
        logger.warning("event stream of job %s refused: %d streams open", job_id, events.open_streams)
        message = f"this API replica has {events.open_streams} event streams open; retry in a few seconds"
        yield b"retry: 5000\n" + sse("error", {"code": "too_many_streams", "message": message})
        return
    events.open_streams += 1
    try:
        async for frame in _stream(events, job_id, request, render, keepalive_seconds, estimate):
            yield frame
    finally:
        events.open_streams -= 1


async def _stream(
    events: AsyncJobEvents,
    job_id: str,
    request: Request,
    render: Callable[[JobRecord], JSONObject],
    keepalive_seconds: float,
    estimate: Estimate | None,
) -> AsyncIterator[bytes]:
    # Subscribe before reading the record, so no event between the read and the subscription is lost.
    pubsub = await events.subscribe(job_id)
    try:
        record = await events.get(job_id)
        if record is None:
            return
        yield sse("state", render(record))
        if record.is_terminal:
            return
        last_sent = time.monotonic()
        queued = record.status == JobStatus.QUEUED
        last_queue: JSONObject | None = None
        while not await request.is_disconnected():
            if queued and estimate is not None:
                current = await estimate(job_id)
                if current is not None and _moved(current, last_queue):
                    yield sse("queue", current)
                    last_queue, last_sent = current, time.monotonic()
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
            if message is not None and message.get("type") == "message":
                data = json.loads(message["data"])
                yield sse(str(data.get("event", "progress")), data)
                last_sent = time.monotonic()
                if data.get("event") == "status":
                    queued = data.get("status") == JobStatus.QUEUED.value
                if _is_terminal_event(data):
                    break
            elif time.monotonic() - last_sent >= keepalive_seconds:
                # Also a safety net: a record that turned terminal without an event we saw ends the stream.
                record = await events.get(job_id)
                if record is None or record.is_terminal:
                    break
                yield b": keepalive\n\n"
                last_sent = time.monotonic()
        final = await events.get(job_id)
        if final is not None:
            yield sse("state", render(final))
    finally:
        await pubsub.aclose()


async def wait_for_end(events: AsyncJobEvents, job_id: str, seconds: float) -> JobRecord | None:
    """The job's final record if it ends within `seconds`, else None (also None, at once, when this replica
    already has its maximum of open streams and waits: a wait holds one Redis connection, no thread)."""
    if events.open_streams >= events.max_streams:
        logger.warning("wait for job %s refused: %d streams open", job_id, events.open_streams)
        return None
    events.open_streams += 1
    try:
        # Subscribe before reading the record, so an end between the read and the subscription is not missed.
        pubsub = await events.subscribe(job_id)
        try:
            record = await events.get(job_id)
            if record is None or record.is_terminal or seconds <= 0:
                return record if record is not None and record.is_terminal else None
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=min(left, POLL_SECONDS)
                )
                if (
                    message is not None
                    and message.get("type") == "message"
                    and _is_terminal_event(json.loads(message["data"]))
                ):
                    break
            record = await events.get(job_id)
            return record if record is not None and record.is_terminal else None
        finally:
            await pubsub.aclose()
    finally:
        events.open_streams -= 1
