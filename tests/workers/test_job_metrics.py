"""The service-wide job figures the JobStore's Lua scripts count at each transition (workers.job_metrics)."""

from __future__ import annotations

import time

from workers import job_metrics as jm
from workers import redis_keys


def figures(redis_client) -> dict[str, float]:
    return {k: float(v) for k, v in redis_client.hgetall(redis_keys.METRICS).items()}


def test_active_jobs_move_between_statuses_and_finished_ones_are_counted(jobstore, redis_client):
    a, _ = jobstore.create("stylize", "alice", {}, total=1)
    b, _ = jobstore.create("stylize", "alice", {}, total=1)
    c, _ = jobstore.create("batch", "bob", {}, total=3)
    jobstore.create("stylize", "alice", {}, total=1, idempotency_key="k")
    jobstore.create("stylize", "alice", {}, total=1, idempotency_key="k")  # a replay is no new job
    got = figures(redis_client)
    assert got[jm.active_field("stylize", "queued")] == 3 and got[jm.active_field("batch", "queued")] == 1

    assert jobstore.start(a.id) and jobstore.start(a.id)  # a redelivered start counts once
    assert jobstore.start(c.id)
    got = figures(redis_client)
    assert got[jm.active_field("stylize", "queued")] == 2 and got[jm.active_field("stylize", "running")] == 1

    jobstore.mark_item_done(a.id, 0)
    assert jobstore.succeed(a.id, {"output_key": "x"})
    assert not jobstore.succeed(a.id, {"output_key": "x"})  # terminal: nothing moves, nothing is counted
    assert jobstore.cancel(b.id)  # queued -> canceled at once
    for index in range(3):
        jobstore.mark_item_done(c.id, index)
    assert jobstore.fail(c.id, "boom", "broke")
    got = figures(redis_client)
    assert got[jm.active_field("stylize", "queued")] == 1
    assert got[jm.active_field("stylize", "running")] == 0 and got[jm.active_field("batch", "running")] == 0
    assert got[jm.finished_field("stylize", "succeeded")] == 1
    assert got[jm.finished_field("stylize", "canceled")] == 1
    assert got[jm.finished_field("batch", "failed")] == 1
    # Images of finished jobs whatever their end (done items of a failed batch were stylized too).
    assert got[jm.IMAGES_FIELD] == 4
    slots = redis_client.mget([redis_keys.metrics_images_slot(s) for s in jm.window_slots(time.time())])
    assert sum(int(n) for n in slots if n) == 4


class Clock:
    """The JobStore's clock (its `time` module), moved by hand: a run time is then exact, not slept."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_durations_fill_cumulative_buckets_of_started_jobs_only(jobstore, redis_client, monkeypatch):
    import workers.jobstore

    clock = Clock(1_700_000_000.0)
    monkeypatch.setattr(workers.jobstore, "time", clock)
    ran, _ = jobstore.create("train", "alice", {}, total=0)
    never, _ = jobstore.create("train", "alice", {}, total=0)
    jobstore.start(ran.id)
    clock.now += 0.375  # exact in binary: the sum below is this, to the last bit
    jobstore.set_progress(ran.id, done=7)  # training steps are no images
    assert jobstore.succeed(ran.id, {})
    assert jobstore.fail(never.id, "bad", "never started")
    got = figures(redis_client)
    assert got[jm.duration_count_field("train")] == 1  # the job that never ran has no run time
    assert got[jm.duration_sum_field("train")] == 0.375
    assert any(bound < 0.375 for bound in jm.DURATION_BUCKETS)  # the cut below is inside the buckets
    for bound in jm.DURATION_BUCKETS:
        if bound < 0.375:
            assert jm.duration_bucket_field("train", bound) not in got, bound
        else:
            assert got[jm.duration_bucket_field("train", bound)] == 1, bound
    assert jm.IMAGES_FIELD not in got
