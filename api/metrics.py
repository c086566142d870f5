"""Prometheus metrics: HTTP requests of this replica, plus service-wide figures read from Redis at scrape time
(jobs by kind and status, queue depth per queue, durations of finished jobs, images per second), so every
replica reports the same service-wide values and nothing is lost when a replica restarts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.contracts import Queues
from workers.jobstore import JobStore

logger = logging.getLogger(__name__)

HTTP_REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = PromCounter(
    "animegan_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=HTTP_REGISTRY
)
LATENCY = Histogram(
    "animegan_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    registry=HTTP_REGISTRY,
)

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
# Finished jobs within this window count towards images per second.
RATE_WINDOW_SECONDS = 300
# A scrape reads at most this many job records (records expire after job_ttl_seconds, so this bounds the cost).
MAX_SCANNED_JOBS = 20_000
# Celery's Redis transport keeps priority levels as extra lists named queue + "\x06\x16" + level.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class RequestMetricsMiddleware:
    """Counts requests and their latency by route template (never by raw path, which holds ids)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], template, str(status["code"])).inc()
            LATENCY.labels(scope["method"], template).observe(time.perf_counter() - start)


class ServiceCollector(Collector):
    """Reads job records and queue lengths from Redis on each scrape."""

    def __init__(self, jobs: JobStore):
        self.jobs = jobs

    def collect(self) -> Iterator[Any]:
        client = self.jobs.redis
        depth = GaugeMetricFamily(
            "animegan_queue_depth", "Tasks waiting in each broker queue", labels=["queue"]
        )
        for queue in Queues:
            depth.add_metric([queue.value], sum(client.llen(queue.value + s) for s in PRIORITY_SUFFIXES))
        yield depth

        counts: Counter[tuple[str, str]] = Counter()
        durations: dict[str, list[float]] = {}
        recent_images = 0
        now = time.time()
        for rec in self.jobs.iter_records(MAX_SCANNED_JOBS):
            kind = rec.kind.value
            counts[(kind, rec.status.value)] += 1
            if rec.started_at is not None and rec.finished_at is not None:
                durations.setdefault(kind, []).append(rec.finished_at - rec.started_at)
                if kind != "train" and now - rec.finished_at <= RATE_WINDOW_SECONDS:
                    recent_images += int(rec.progress.get("done", 0))
        jobs = GaugeMetricFamily("animegan_jobs", "Job records by kind and status", labels=["kind", "status"])
        for (kind, status), n in sorted(counts.items()):
            jobs.add_metric([kind, status], n)
        yield jobs

        hist = HistogramMetricFamily(
            "animegan_job_duration_seconds",
            "Run time (start to finish) of retained finished jobs",
            labels=["kind"],
        )
        for kind, values in sorted(durations.items()):
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            hist.add_metric([kind], buckets, sum(values))
        yield hist

        yield GaugeMetricFamily(
            "animegan_images_per_second",
            f"Images stylized by jobs that finished in the last {RATE_WINDOW_SECONDS} s, per second",
            value=recent_images / RATE_WINDOW_SECONDS,
        )


def registry_for(services: Any) -> CollectorRegistry:
    """This replica's registry: its HTTP metrics plus the service-wide collector (created once per app)."""
    registry = getattr(services, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        registry.register(_Delegate(HTTP_REGISTRY))
        registry.register(ServiceCollector(services.jobs))
        services.metrics_registry = registry
    return registry


class _Delegate(Collector):
    """Exposes another registry's metrics inside this one."""

    def __init__(self, inner: CollectorRegistry):
        self.inner = inner

    def collect(self) -> Iterator[Any]:
        yield from self.inner.collect()
