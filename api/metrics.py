"""Prometheus metrics: HTTP requests of this replica, plus service-wide job figures that the job transitions
count in Redis as they happen (workers.job_metrics), so every replica reports the same values, nothing is lost
when a replica restarts, and a scrape costs one round trip of a fixed number of commands however many jobs exist.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from workers import job_metrics as jm
from workers import redis_keys
from workers.contracts.base import Queues
from workers.contracts.registry import KINDS

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    import redis
    from prometheus_client.metrics_core import Metric

    from api.deps import Services

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

# A worker counts as alive in animegan_workers while its watchdog ticked (every 5 s) within this long.
WORKER_ALIVE_SECONDS = 60
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
    """Reads the counted job figures and the queue lengths from Redis on each scrape, in one pipeline."""

    def __init__(self, redis_client: redis.Redis):
        self.redis = redis_client

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        slots = jm.window_slots(now)
        pipe = self.redis.pipeline(transaction=False)
        for queue in Queues:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(redis_keys.broker_queue(queue.value + suffix))
        kinds = list(KINDS)
        for kind in kinds:
            pipe.zrange(redis_keys.metrics_queued(kind), 0, 0, withscores=True)
        for queue in Queues:
            pipe.zcount(redis_keys.workers_alive(queue.value), now - WORKER_ALIVE_SECONDS, "+inf")
        pipe.hlen(redis_keys.KOMBU_UNACKED)
        pipe.hgetall(redis_keys.METRICS)
        pipe.mget([redis_keys.metrics_images_slot(slot) for slot in slots])
        *lengths, unacked, raw, recent = pipe.execute()
        lengths, oldest, alive = (
            lengths[: -len(kinds) - len(Queues)],
            lengths[-len(kinds) - len(Queues) : -len(Queues)],
            lengths[-len(Queues) :],
        )
        figures = {_text(k): float(_text(v)) for k, v in raw.items()}

        depth = GaugeMetricFamily(
            "animegan_queue_depth", "Tasks waiting in each broker queue", labels=["queue"]
        )
        per_queue = len(PRIORITY_SUFFIXES)
        for i, queue in enumerate(Queues):
            depth.add_metric([queue.value], sum(lengths[i * per_queue : (i + 1) * per_queue]))
        yield depth
        age = GaugeMetricFamily(
            "animegan_oldest_queued_job_age_seconds",
            "Seconds the oldest job still queued (not started) has waited; 0 with none",
            labels=["kind"],
        )
        for kind, first in zip(kinds, oldest, strict=True):
            age.add_metric([kind], max(0.0, now - float(first[0][1])) if first else 0.0)
        yield age
        workers = GaugeMetricFamily(
            "animegan_workers",
            f"Workers consuming each queue whose watchdog ticked within {WORKER_ALIVE_SECONDS} s",
            labels=["queue"],
        )
        for queue, count in zip(Queues, alive, strict=True):
            workers.add_metric([queue.value], count)
        yield workers
        yield GaugeMetricFamily(
            "animegan_unacked_tasks", "Tasks delivered to a worker and not yet acknowledged", value=unacked
        )
        yield CounterMetricFamily(
            "animegan_device_errors",
            "Tasks that failed on a broken device (CUDA errors), all workers",
            value=figures.get(jm.DEVICE_ERRORS_FIELD, 0),
        )

        jobs = GaugeMetricFamily("animegan_jobs", "Jobs queued or running now", labels=["kind", "status"])
        finished = CounterMetricFamily(
            "animegan_jobs_finished", "Jobs that ended, by kind and final status", labels=["kind", "status"]
        )
        hist = HistogramMetricFamily(
            "animegan_job_duration_seconds", "Run time (start to finish) of finished jobs", labels=["kind"]
        )
        for kind in kinds:
            for status in jm.ACTIVE_STATUSES:
                jobs.add_metric([kind, status], figures.get(jm.active_field(kind, status), 0))
            for status in jm.FINISHED_STATUSES:
                finished.add_metric([kind, status], figures.get(jm.finished_field(kind, status), 0))
            buckets = [
                (jm.bucket_label(b), figures.get(jm.duration_bucket_field(kind, b), 0))
                for b in jm.DURATION_BUCKETS
            ]
            buckets.append(("+Inf", figures.get(jm.duration_count_field(kind), 0)))
            hist.add_metric([kind], buckets, figures.get(jm.duration_sum_field(kind), 0))
        yield from (jobs, finished, hist)

        yield CounterMetricFamily(
            "animegan_images",
            "Images (video frames) stylized by finished jobs",
            value=figures.get(jm.IMAGES_FIELD, 0),
        )
        recent_images = sum(int(_text(n)) for n in recent if n is not None)
        yield GaugeMetricFamily(
            "animegan_images_per_second",
            f"Images stylized by jobs that finished in the last {jm.RATE_WINDOW_SECONDS} s, per second",
            value=recent_images / jm.RATE_WINDOW_SECONDS,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def registry_for(services: Services) -> CollectorRegistry:
    """This replica's registry: its HTTP metrics plus the service-wide collector (created once per app)."""
    registry = getattr(services, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        registry.register(_Delegate(HTTP_REGISTRY))
        registry.register(ServiceCollector(services.jobs.redis))
        services.metrics_registry = registry
    return registry


class _Delegate(Collector):
    """Exposes another registry's metrics inside this one."""

    def __init__(self, inner: CollectorRegistry):
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        yield from self.inner.collect()


class _QuietHandler(WSGIRequestHandler):
    """wsgiref prints every request to stderr; scrapes every 30 s are not worth a log line each."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class names it so)
        logger.debug("metrics %s: " + format, self.address_string(), *args)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """GET /metrics on its own port (ANIMEGAN_METRICS_PORT), apart from the public API: a WSGI server in a daemon
    thread of the API process, so the public port never shows job counts of every tenant and a scrape never
    waits behind API requests. With ANIMEGAN_METRICS_TOKEN set, it also wants that token as a bearer."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, token: str | None):
        self.token = token
        self.prometheus = make_wsgi_app(registry)
        self.httpd = make_server(host, port, self.app, _ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-server", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _error(start_response, "404 Not Found", "not_found", "this port serves GET /metrics only")
        if self.token is not None:
            scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.token):
                return _error(
                    start_response,
                    "401 Unauthorized",
                    "invalid_metrics_token",
                    "send ANIMEGAN_METRICS_TOKEN as 'Authorization: Bearer <token>' (Prometheus: authorization)",
                )
        return self.prometheus(environ, start_response)


def _error(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    body = json.dumps(error_body(code, message)).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
