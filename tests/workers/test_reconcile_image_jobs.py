"""The reconciler's pass over image jobs (stylize, batch, video) whose task a failover lost, on the real Redis
with real Celery messages: a job that a message still names is left alone, a lost one ends instead of holding
its tenant's slot forever (issue 20, B9); the training case runs end to end in tests/e2e/test_reconciler.py."""

from __future__ import annotations

import json
import time

from celery import Celery

from workers import enqueue
from workers.celery_app import celery_config
from workers.contracts.base import Queues
from workers.contracts.images import stylize_message
from workers.jobstore import JobStore
from workers.reconciler import reconcile_once
from workers.settings import ServiceSettings


def test_lost_image_jobs_end_and_named_ones_are_left_alone(redis_url, redis_client):
    app = Celery("reconcile-test", set_as_current=False)
    app.conf.update(celery_config(ServiceSettings(redis_url=redis_url)))
    jobs = JobStore(redis_client)
    params = {"model": "tiny", "size_mode": "original"}
    lost_single, _ = jobs.create("stylize", "alice", params, total=1, webhook_url="https://example.com/hook")
    jobs.start(lost_single.id)
    lost_batch, _ = jobs.create("batch", "alice", params, total=4)
    jobs.start(lost_batch.id)
    for index in (0, 1):
        jobs.mark_item_done(lost_batch.id, index)
    waiting, _ = jobs.create("stylize", "alice", params, total=1)
    enqueue.send(stylize_message(waiting.id, f"inputs/{waiting.id}/000000.png"), app=app)
    fresh, _ = jobs.create("stylize", "alice", params, total=1)

    later = time.time() + 600  # every record is quiet by then; `fresh` too, but it is checked at `now`
    assert reconcile_once(jobs, redis_client, app, grace_seconds=180, now=time.time()) == []
    ended = {r.job_id for r in reconcile_once(jobs, redis_client, app, grace_seconds=180, now=later)}
    assert ended == {lost_single.id, lost_batch.id, fresh.id}

    assert jobs.get(lost_single.id).error["code"] == "task_lost"
    assert jobs.get(waiting.id).status == "queued", "a job whose message waits in the queue was touched"
    errors = jobs.item_errors(lost_batch.id)
    assert set(errors) == {2, 3} and {e["code"] for e in errors.values()} == {"task_lost"}
    assert jobs.get(lost_batch.id).status == "running", "the finalizer, not the reconciler, ends a batch"
    queued = [json.loads(m)["headers"] for m in redis_client.lrange(Queues.stylize.value, 0, -1)]
    assert {
        (h["task"], h["argsrepr"].count(lost_batch.id)) for h in queued if lost_batch.id in h["argsrepr"]
    } == {("animegan.finalize_batch", 1)}
    hooks = [json.loads(m)["headers"] for m in redis_client.lrange(Queues.webhooks.value, 0, -1)]
    assert [h["task"] for h in hooks if lost_single.id in h["argsrepr"]] == ["animegan.deliver_webhook"]
