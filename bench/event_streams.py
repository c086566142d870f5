"""Event streams against liveness: how fast /healthz and a job's GET answer while N server-sent event streams are
open on one queued job of one API process (the case of issue 20, B5). Starts its own API on local storage.

    .venv/bin/python bench/event_streams.py [--streams 0,80,200] [--calls 15] [--redis-url URL]

Flushes the Redis database it is given (default db 14). Prints one row per stream count: median and max ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

from api.auth import create_api_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_stream(port: int, key: str, job_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    seen = b""
    while b"event: state" not in seen:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"stream closed: {seen[-300:]!r}")
        seen += chunk
    return sock


def timed(call, times: int) -> tuple[float, float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent), max(spent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="0,80,200")
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    client.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    port = free_port()
    env = {**os.environ, "ANIMEGAN_REDIS_URL": args.redis_url, "ANIMEGAN_STORAGE_URL": (tmp / "s").as_uri(),
           "ANIMEGAN_RATE_LIMIT_REQUESTS": "100000", "ANIMEGAN_MAX_EVENT_STREAMS": "1000"}  # fmt: skip
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        key = create_api_key(client, "bench")
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        from workers.jobstore import JobStore

        job, _ = JobStore(client).create("stylize", "bench", {"model": "x"}, total=1)
        print(f"{'streams':>8} {'/healthz median':>16} {'max':>8} {'GET job median':>15} {'max':>8}")
        streams: list[socket.socket] = []
        for count in (int(n) for n in args.streams.split(",")):
            with ThreadPoolExecutor(20) as pool:
                streams += pool.map(lambda _: open_stream(port, key, job.id), range(count - len(streams)))
            time.sleep(2)
            health = timed(lambda: http.get("/healthz"), args.calls)
            get = timed(lambda: http.get(f"/v1/jobs/{job.id}"), args.calls)
            print(
                f"{count:>8} {health[0]:>13.1f} ms {health[1]:>5.0f} ms {get[0]:>12.1f} ms {get[1]:>5.0f} ms"
            )
        for sock in streams:
            sock.close()
    finally:
        api.terminate()
        api.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)
        client.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
