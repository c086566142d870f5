"""A thread in the worker's main process: keeps the liveness heartbeat file fresh, restarts a worker whose consumer
stalled (its queues hold tasks, it takes none), and ends an idle worker when asked to (KEDA ScaledJob pods).

Celery's consumer can stop taking messages after a Redis reconnect while the process and its broker connection
look healthy; `celery inspect ping` still answers. Only "tasks wait, none arrive, none run" tells, so that is
what the stall check measures, with LLEN on the worker's own queues (a few commands every tick, no scans).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from celery.signals import task_received, worker_ready, worker_shutting_down

from workers import redis_keys

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)

TICK_SECONDS = 5.0
# worker-alive: a heartbeat older than this means the main process (or its watchdog) is wedged.
HEARTBEAT_MAX_AGE_SECONDS = 60.0
# After asking Celery to stop, how long before the watchdog stops the process itself.
FORCE_EXIT_AFTER_SECONDS = 60.0
EXIT_STALLED = 3  # exit status of a worker the watchdog stopped because it stalled
EXIT_DEVICE = 4  # ... because its device failed (workers.device_health.EXIT_DEVICE)


class WorkerWatchdog:
    """See the module docstring; `check()` is one tick, so tests can drive it without the thread."""

    def __init__(
        self,
        redis_client: redis.Redis,
        queues: list[str],
        heartbeat_file: Path,
        stall_seconds: float = 0,
        idle_exit_seconds: float = 0,
        busy: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        device_failed: Event | None = None,
    ) -> None:
        self.redis, self.queues, self.heartbeat_file = redis_client, queues, heartbeat_file
        # A multiprocessing.Event the pool children set after too many device errors in a row (device_health).
        self.device_failed = device_failed
        self.stall_seconds, self.idle_exit_seconds = stall_seconds, idle_exit_seconds
        self._busy = busy or _celery_busy
        self._clock = clock
        self.last_received = self.last_busy = clock()
        self.stopping: int | None = None  # exit status once the watchdog asked the worker to stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="animegan-watchdog", daemon=True)

    def _announce(self) -> None:
        """This worker in the live set of each of its queues (animegan_workers); best effort, Redis may be down."""
        now, member = time.time(), _member()
        try:
            pipe = self.redis.pipeline(transaction=False)
            for queue in self.queues:
                key = redis_keys.workers_alive(queue)
                pipe.zadd(key, {member: now})
                pipe.zremrangebyscore(key, "-inf", now - 3600)  # workers gone for an hour
            pipe.execute()
        except redis.RedisError as exc:
            logger.debug("watchdog: could not record the heartbeat in Redis (%s)", exc)

    def received(self) -> None:
        self.last_received = self._clock()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _wait(self) -> bool:
        """Sleep one tick, or less when the children report a failed device; False once closed."""
        if self.device_failed is not None and self.stopping is None:
            self.device_failed.wait(TICK_SECONDS)
        else:
            self._stop.wait(TICK_SECONDS)
        return not self._stop.is_set()

    def _run(self) -> None:
        asked_at = None
        while self._wait():
            if self.stopping is None:
                self.stopping = self.check()
                if self.stopping is not None:
                    asked_at = self._clock()
                    _ask_celery_to_stop(self.stopping)
            elif asked_at is None:
                # A shutdown from outside (SIGTERM) finishing its task: still alive, say so to the probe.
                self.heartbeat_file.touch()
            elif self._clock() - asked_at > FORCE_EXIT_AFTER_SECONDS:
                logger.error(
                    "watchdog: the worker did not stop within %.0f s; exiting", FORCE_EXIT_AFTER_SECONDS
                )
                os._exit(self.stopping)

    def check(self) -> int | None:
        """One tick: touch the heartbeat; the exit status to stop with (stalled or idle), or None to go on."""
        now = self._clock()
        self.heartbeat_file.parent.mkdir(parents=True, exist_ok=True)
        self.heartbeat_file.touch()
        self._announce()
        if self.device_failed is not None and self.device_failed.is_set():
            logger.error("watchdog: the device failed tasks in a row (ANIMEGAN_MAX_DEVICE_ERRORS); stopping")
            return EXIT_DEVICE
        if self._busy():
            self.last_busy = now
            return None
        quiet = now - max(self.last_received, self.last_busy)
        if self.stall_seconds and quiet >= self.stall_seconds:
            try:
                waiting = {
                    queue: int(self.redis.llen(redis_keys.broker_queue(queue))) for queue in self.queues
                }
            except redis.RedisError as exc:
                # Redis down is not a stall of this worker; Celery reconnects, then the check resumes.
                logger.warning("watchdog: cannot read queue lengths (%s)", exc)
                return None
            if any(waiting.values()):
                logger.error(
                    "watchdog: queues %s wait but this worker has taken no task for %.0f s; restarting it",
                    waiting,
                    quiet,
                )
                return EXIT_STALLED
        if self.idle_exit_seconds and quiet >= self.idle_exit_seconds:
            logger.info("watchdog: idle for %.0f s; exiting (ANIMEGAN_WORKER_IDLE_EXIT_SECONDS)", quiet)
            return 0
        return None


def _member() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def _celery_busy() -> bool:
    """True while this worker holds a task (reserved or running); read in the main process."""
    from celery.worker import state

    return bool(state.reserved_requests)


def _ask_celery_to_stop(status: int) -> None:
    """Warm shutdown with `status` as the exit code: Celery's consumer loop checks should_stop every turn (a
    SIGTERM would reset it to 0); a loop that no longer turns is ended by the forced exit in _run."""
    from celery.worker import state

    state.should_stop = status


def install(
    settings: WorkerSettings, queues: list[str], device_failed: Event | None = None
) -> WorkerWatchdog:
    """Start the watchdog when the worker is ready (main process only; pool children are forked earlier)."""
    from workers.redis_connection import connect

    watchdog = WorkerWatchdog(
        connect(settings, socket_timeout=10, socket_connect_timeout=5),
        queues,
        settings.heartbeat_file,
        settings.watchdog_stall_seconds,
        settings.worker_idle_exit_seconds,
        device_failed=device_failed,
    )
    watchdog.check()  # the heartbeat exists before the first probe

    @worker_ready.connect(weak=False)
    def _start(**_: object) -> None:
        watchdog.start()

    @task_received.connect(weak=False)
    def _received(**_: object) -> None:
        watchdog.received()

    @worker_shutting_down.connect(weak=False)
    def _stop(**_: object) -> None:
        # A warm shutdown waits for the running task; the heartbeat goes on meanwhile, the checks do not.
        if watchdog.stopping is None:
            watchdog.stopping = 0

    return watchdog


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the heartbeat file was touched, or None if there is none."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
