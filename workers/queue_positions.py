"""Queue position and ETA of a waiting job, from what the broker queues hold and how fast they were served.

Kept by Celery signals, in whichever process sends or runs a task (the API, a worker sending a training run's next
segment, a batch's finalizer or a video's join):
  queue_tasks(queue, task)          sorted set of the tasks named `task` sent to `queue` and not started yet
                                    (score: send time)
  job fields queue, queue_score     the queue and send time of a job's first task
  task_seconds(queue, task, model)  the run times of the last TASK_SAMPLES such tasks of `model` (model "*": any)
A job's position is the number of tasks sent to its queue before its first one and not started. Its start is
estimated as the work ahead (for each task name: the tasks ahead x the mean run time of such tasks, of any model)
divided by the workers serving the queue now (their watchdog ticked within WORKER_ALIVE_SECONDS); its end as the
start plus its own tasks x the mean run time of its first task's name and its model (any model's, without a
history of its own), spread over at most that many workers. Means are per task name because a batch chunk of 16
images and a single image are both one task.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.signals import after_task_publish, task_postrun, task_prerun, task_revoked

from workers import redis_keys
from workers.contracts.base import Queues

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

TRACKED_QUEUES = frozenset({Queues.stylize.value, Queues.train.value})  # webhooks are not jobs' work
TASK_SAMPLES = 50  # run times kept per queue and model
WORKER_ALIVE_SECONDS = 60  # a worker whose watchdog ticked within this counts as serving its queue
ANY_MODEL = "*"
# Tasks left in queue_tasks this long (lost with a flushed broker, say) no longer count as ahead.
STALE_SECONDS = 7 * 24 * 3600

_client: redis.Redis | None = None
_started: dict[str, float] = {}  # task id -> monotonic start, in the process running it


def track_with(client: redis.Redis | None) -> None:
    """Count tasks sent and run by this process into `client`'s Redis (None: stop)."""
    global _client
    _client = client


def _job_id(body: Any) -> str | None:  # Any: Celery's message body, (args, kwargs, embed) in protocol 2
    try:
        return str(body[0][0]["job_id"])
    except (TypeError, KeyError, IndexError):
        return None


def task_sent(task_id: str, task: str | None, queue: str | None, body: Any) -> None:
    if _client is None or queue not in TRACKED_QUEUES or not task:
        return
    now = time.time()
    job_id = _job_id(body)
    pipe = _client.pipeline(transaction=False)
    pipe.zadd(redis_keys.queue_tasks(queue, task), {task_id: now})
    pipe.zremrangebyscore(redis_keys.queue_tasks(queue, task), "-inf", now - STALE_SECONDS)
    if job_id is not None:
        pipe.hsetnx(redis_keys.job(job_id), "queue", queue)
        pipe.hsetnx(redis_keys.job(job_id), "queue_score", repr(now))
    pipe.execute()


def task_started(task_id: str, task: str | None, queue: str | None) -> None:
    _started[task_id] = time.monotonic()
    if _client is not None and queue in TRACKED_QUEUES and task:
        _client.zrem(redis_keys.queue_tasks(queue, task), task_id)


def task_dropped(task_id: str, task: str | None, queue: str | None) -> None:
    """A revoked task never runs: it is no longer ahead of anyone."""
    if _client is not None and queue in TRACKED_QUEUES and task:
        _client.zrem(redis_keys.queue_tasks(queue, task), task_id)


def forget(client: redis.Redis, queue: str, task_ids: list[str]) -> None:
    """Tasks of a job that ended before they ran (canceled, expired): the broker still holds them, but a worker
    drops them at once, so they are nobody's wait."""
    if not task_ids or queue not in TRACKED_QUEUES:
        return
    pipe = client.pipeline(transaction=False)
    for task in queue_task_names(queue):
        pipe.zrem(redis_keys.queue_tasks(queue, task), *task_ids)
    pipe.execute()


def queue_task_names(queue: str) -> list[str]:
    """The task names that run on `queue`, in a fixed order (the registry's)."""
    from workers.contracts.registry import TASK_QUEUES

    return sorted(task for task, where in TASK_QUEUES.items() if where.value == queue)


def task_finished(task_id: str, task: str | None, queue: str | None, job_id: str | None) -> None:
    """Count the run time of a task that worked on its job (one dropped at once, its job ended, is no sample)."""
    started = _started.pop(task_id, None)
    if _client is None or started is None or job_id is None or queue not in TRACKED_QUEUES or not task:
        return
    seconds = time.monotonic() - started
    params, updated = _client.hmget(redis_keys.job(job_id), ["params", "updated_at"])
    if params is None or updated is None or float(updated) < time.time() - seconds:
        return  # the task did not touch its job: it found it ended (or gone) and dropped it
    spec = json.loads(params)
    model = str(spec.get("model") or spec.get("teacher") or ANY_MODEL)
    pipe = _client.pipeline(transaction=False)
    for key in (redis_keys.task_seconds(queue, task, model), redis_keys.task_seconds(queue, task, ANY_MODEL)):
        pipe.lpush(key, f"{seconds:.4f}")
        pipe.ltrim(key, 0, TASK_SAMPLES - 1)
    pipe.execute()


# KEYS: workers_alive, task_seconds(queue, own task, model), task_seconds(queue, own task, ANY_MODEL), then per
# task name of the queue: queue_tasks(queue, name), task_seconds(queue, name, ANY_MODEL). ARGV: the job's
# queue_score, now. Returns {live workers, own model's samples, own task's samples of any model, then per name:
# tasks ahead, samples}. One round trip, from the sync API routes and the async streams alike.
ESTIMATE = f"""
local out = {{redis.call('ZCOUNT', KEYS[1], tonumber(ARGV[2]) - {WORKER_ALIVE_SECONDS}, '+inf'),
  redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1)}}
for i = 4, #KEYS, 2 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i], '-inf', '(' .. ARGV[1])
  out[#out + 1] = redis.call('LRANGE', KEYS[i + 1], 0, -1)
end
return out
"""


@dataclass(frozen=True)
class QueueEstimate:
    queue: str
    position: int  # tasks ahead of the job's first task in its queue
    workers: int  # workers serving the queue now
    task_seconds: float | None  # mean run time of one task like its first, of its model (None: no history)
    basis: str  # what the estimate is computed from, in words
    starts_at: float | None  # epoch seconds (None: no history, or no worker serving the queue)
    ends_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue, "position": self.position, "workers": self.workers,
            "task_seconds": self.task_seconds, "basis": self.basis, "starts_at": self.starts_at,
            "ends_at": self.ends_at,
        }  # fmt: skip


def estimate_keys(queue: str, task: str, model: str) -> list[str]:
    keys = [
        redis_keys.workers_alive(queue),
        redis_keys.task_seconds(queue, task, model),
        redis_keys.task_seconds(queue, task, ANY_MODEL),
    ]
    for name in queue_task_names(queue):
        keys += [redis_keys.queue_tasks(queue, name), redis_keys.task_seconds(queue, name, ANY_MODEL)]
    return keys


def _mean(samples: list[Any]) -> float | None:
    values = [float(s) for s in samples]
    return sum(values) / len(values) if values else None


def build_estimate(queue: str, model: str, own_tasks: int, raw: list[Any], now: float) -> QueueEstimate:
    """The estimate from ESTIMATE's answer; `own_tasks` is how many tasks the job itself runs."""
    workers = int(raw[0])
    own_mean, any_mean = _mean(raw[1]), _mean(raw[2])
    per_name = [(int(raw[i]), _mean(raw[i + 1])) for i in range(3, len(raw), 2)]
    ahead = sum(count for count, _ in per_name)
    task_mean = own_mean if own_mean is not None else any_mean
    unknown = [count for count, mean in per_name if count and mean is None]
    if task_mean is None or unknown:
        what = (
            "no task of its kind has run on this queue yet"
            if task_mean is None
            else ("no task like some of those ahead has run on this queue yet")
        )
        return QueueEstimate(queue, ahead, workers, task_mean, what, None, None)
    basis = (
        f"tasks ahead x the mean run time of their kind on queue {queue}, over {max(workers, 1)} worker(s); "
        f"its own {own_tasks} task(s) x {task_mean:.3f} s, the mean of "
        + (f"model {model}" if own_mean is not None else "any model")
    )
    if workers == 0:
        return QueueEstimate(
            queue, ahead, 0, round(task_mean, 4), basis + "; no worker serves it now", None, None
        )
    work_ahead = sum(count * (mean or 0.0) for count, mean in per_name)
    starts = now + work_ahead / workers
    ends = starts + own_tasks * task_mean / min(workers, max(own_tasks, 1))
    return QueueEstimate(queue, ahead, workers, round(task_mean, 4), basis, round(starts, 3), round(ends, 3))


def _queue_of(task: Any) -> str | None:  # Any: a Celery Task, whose request carries the delivery info
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    return info.get("routing_key")


@after_task_publish.connect
def _on_publish(headers: Any = None, body: Any = None, routing_key: str | None = None, **_: Any) -> None:
    if headers and "id" in headers:
        _safely(task_sent, headers["id"], headers.get("task"), routing_key, body)


@task_prerun.connect
def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id:
        _safely(task_started, task_id, getattr(task, "name", None), _queue_of(task))


@task_postrun.connect
def _on_postrun(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    if task_id:
        _safely(task_finished, task_id, getattr(task, "name", None), _queue_of(task), _job_id((args, {}, {})))


@task_revoked.connect
def _on_revoked(request: Any = None, **_: Any) -> None:
    if request is not None and getattr(request, "id", None):
        info = getattr(request, "delivery_info", None) or {}
        _safely(task_dropped, request.id, getattr(request, "task_name", None), info.get("routing_key"))


def _safely(step: Any, *args: Any) -> None:
    """Queue positions are an estimate: a Redis hiccup here must never fail a send or a task."""
    import redis as redis_module

    try:
        step(*args)
    except redis_module.RedisError as exc:
        logger.warning("queue position bookkeeping skipped: %s", exc)
