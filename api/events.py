"""Server-sent events of one job: its current state first, then the JobStore's pub/sub events as they come,
ending after a terminal status (with a last `state` event holding the final record).

Wire format per event: `event: state|progress|status` and one `data:` line of JSON; `: keepalive` comments
keep idle streams open through proxies.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import anyio
from fastapi import Request

from workers.jobstore import JobRecord, JobStatus, JobStore
from workers.json_types import JSONObject

logger = logging.getLogger(__name__)

# How long one wait for a pub/sub message blocks a worker thread; bounds how late a disconnect is noticed.
POLL_SECONDS = 1.0


def sse(event: str, data: JSONObject) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _is_terminal_event(message: JSONObject) -> bool:
    status = message.get("status")
    return message.get("event") == "status" and status in {s.value for s in JobStatus if s.is_terminal}


async def job_event_stream(
    jobs: JobStore,
    job_id: str,
    request: Request,
    render: Callable[[JobRecord], JSONObject],
    keepalive_seconds: float,
) -> AsyncIterator[bytes]:
    """Yield SSE frames for `job_id` (whose ownership the caller checked) until it ends or the client leaves."""
    # Subscribe before reading the record, so no event between the read and the subscription is lost.
    pubsub = await anyio.to_thread.run_sync(jobs.subscribe, job_id)
    try:
        record = await anyio.to_thread.run_sync(jobs.get, job_id)
        if record is None:
            return
        yield sse("state", render(record))
        if record.is_terminal:
            return
        last_sent = time.monotonic()
        while not await request.is_disconnected():
            message = await anyio.to_thread.run_sync(lambda: pubsub.get_message(timeout=POLL_SECONDS))
            if message is not None and message.get("type") == "message":
                data = json.loads(message["data"])
                yield sse(str(data.get("event", "progress")), data)
                last_sent = time.monotonic()
                if _is_terminal_event(data):
                    break
            elif time.monotonic() - last_sent >= keepalive_seconds:
                # Also a safety net: a record that turned terminal without an event we saw ends the stream.
                record = await anyio.to_thread.run_sync(jobs.get, job_id)
                if record is None or record.is_terminal:
                    break
                yield b": keepalive\n\n"
                last_sent = time.monotonic()
        final = await anyio.to_thread.run_sync(jobs.get, job_id)
        if final is not None:
            yield sse("state", render(final))
    finally:
        await anyio.to_thread.run_sync(pubsub.close)
