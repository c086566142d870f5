"""The Celery app, configured from settings for long GPU tasks on a Redis broker (imports no task code).

`app` (module attribute, built on first access from ANIMEGAN_* settings) is what `celery -A workers.celery_app`
and the task modules (workers.tasks) use; the API calls `configure_app(its settings)` at start-up, then
enqueues by task name (workers.enqueue).

How a task survives a dead worker with the Redis transport (kombu 5.7, read from kombu/transport/redis.py):
- kombu emulates acks: on delivery a message is copied into the `unacked` hash and `unacked_index` sorted set
  (score = delivery time); the ack (task_acks_late: after the task returns) deletes it.
- A prefork *child* killed mid-task (OOM, SIGKILL): the parent sees WorkerLostError and, because of
  task_reject_on_worker_lost, rejects with requeue, which puts the message back at the head of its queue at
  once, marked redelivered. That can loop on a poison input: the workers count attempts in the JobStore and
  fail the job after max_redeliveries.
- Warm shutdown (SIGTERM) waits for running tasks, then `QoS.restore_at_shutdown` puts every message this
  worker reserved but did not ack back on its queue. A pod grace period shorter than the running task ends in
  SIGKILL (next case), which is why training segments stop early on warm shutdown (workers.tasks).
- The whole worker SIGKILLed (node lost, OOM of the main process): nothing runs to restore. The message stays
  in `unacked` until some consumer's `restore_visible` finds it older than visibility_timeout: each worker
  runs it when it starts polling and then periodically (every unacked_restore_interval seconds, scanning on
  every unacked_restore_throttle-th call; kombu's defaults 10 x 10 give ~100 s, we set the throttle to 1;
  both options came with kombu PR #2558). Checked by tests/workers/test_contracts.py (consumer SIGKILLed,
  message redelivered after a 2 s timeout) and by hand for a SIGKILLed prefork child (redelivered at once).
  A restart does NOT restore sooner: a message younger than visibility_timeout waits out its timeout.
  Restored messages carry delivery_info["redelivered"] = True.
- Hence the visibility timeout must exceed the longest task (a training segment plus its checkpoint upload,
  validated in WorkerSettings), or a healthy long task is handed to a second worker while it still runs; the
  training lease's fencing token makes that case harmless. Every app on the broker must use the same value
  (kombu applies the shortest), which is why it lives in the shared ServiceSettings.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

from celery import Celery
from kombu import Queue

from workers import redis_keys
from workers.contracts.base import Queues
from workers.contracts.registry import TASK_QUEUES
from workers.settings import ServiceSettings, load_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_app: Celery | None = None


# Any: Celery's options are values of mixed types (ints, strings, queues, nested dicts).
def celery_config(settings: ServiceSettings) -> dict[str, Any]:
    """The Celery configuration for these settings (a plain dict, so tests can check it)."""
    visibility = settings.visibility_timeout_seconds
    transport: dict[str, int | str | None] = {
        "visibility_timeout": visibility,
        # Sweep for abandoned messages every few seconds (at most a tenth of the timeout), on every sweep.
        "unacked_restore_interval": max(1, min(10, visibility // 10)),
        "unacked_restore_throttle": 1,
        # A broker that vanishes without closing TCP (failover, NAT) must not hang a publish forever.
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        # PING idle connections this often so a dead one is replaced before a command needs it (kombu's
        # default, set here so it cannot drift: it must stay below any proxy's idle timeout).
        "health_check_interval": 25,
    }
    _, broker_prefix = redis_keys.namespace_prefixes(settings.namespace)
    if broker_prefix:
        # Every broker key (queues, unacked, fan-out channels) under the deployment's namespace: another
        # deployment on this Redis has queues of the same names that this one never reads.
        transport["global_keyprefix"] = broker_prefix
    extra: dict[str, Any] = {}  # more Celery options (see above)
    if settings.redis_url.startswith("sentinel:"):
        # kombu's sentinel transport asks the Sentinels for this master (again after each failover).
        transport["master_name"] = settings.redis_sentinel_master
    if settings.redis_url.startswith("rediss:") and "ssl_cert_reqs" not in settings.redis_url:
        # TLS with the server's certificate verified (kombu's default would be a warning and no check).
        extra["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return {
        **extra,
        "broker_url": settings.redis_url,
        "broker_transport_options": transport,
        # No result backend (job state lives in the JobStore); kept equal in case one is ever configured.
        "result_backend": None,
        "result_backend_transport_options": dict(transport),
        "task_ignore_result": True,
        # JSON only: a pickle payload on a shared broker would be code execution.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # At-least-once: ack after the task ran, requeue if its process died, reserve one task at a time.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Keep running tasks through a broker blip. True would SIGTERM every running child on any reconnect, with
        # no checkpoint: a training segment lost its work and a redelivery each time (issue 20, B3). With the
        # Redis transport nothing is redelivered at a disconnect anyway: the message stays in `unacked` until
        # the visibility timeout, and a task that outlives it is harmless (lease fencing for training, outputs
        # at fixed keys counted once for images).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # A task still running at twice the visibility timeout is hung (a CUDA call or a socket that never
        # returns: the lease thread would renew forever); it was handed to another worker at 1x. The pool kills
        # its child, which requeues the task like any lost worker.
        "task_time_limit": 2 * visibility,
        "task_queues": [Queue(queue.value, routing_key=queue.value) for queue in Queues],
        "task_default_queue": Queues.stylize.value,
        "task_routes": {name: {"queue": queue.value} for name, queue in TASK_QUEUES.items()},
        "task_create_missing_queues": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "task_track_started": False,
        "broker_connection_retry_on_startup": True,
    }


def create_celery_app(settings: ServiceSettings) -> Celery:
    """A new app for these settings. `include` names the task package (every kind's tasks), imported only by
    worker processes."""
    redis_keys.set_namespace(settings.namespace)
    app = Celery("animegan", include=["workers.tasks"], set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def get_app() -> Celery:
    """This process's app: built on first use from the environment (worker and CLI processes)."""
    global _app
    with _lock:
        if _app is None:
            _app = create_celery_app(load_settings(ServiceSettings))
        return _app


def configure_app(settings: ServiceSettings) -> Celery:
    """Make the process's app use `settings` (the API calls this at start-up, before its first enqueue)."""
    global _app
    with _lock:
        if _app is None:
            _app = create_celery_app(settings)
        else:
            _app.conf.update(celery_config(settings))
        return _app


def __getattr__(name: str) -> Celery:
    # `from workers.celery_app import app` and `celery -A workers.celery_app` both land here.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
