"""JobStore and TrainingLease against the real Redis server (a flushed test database per test)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from workers.exceptions import IdempotencyConflict, InvalidCursor, InvalidName
from workers.jobstore import JobStatus, JobStore
from workers.lease import TrainingLease


def run_together(fn, count: int) -> list:
    """Call fn(i) from `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def call(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_create_and_get(jobstore):
    record, created = jobstore.create(
        "stylize", "alice", {"model": "hayao"}, total=1, webhook_url="https://x/h"
    )
    assert created
    got = jobstore.get(record.id)
    assert got == record
    assert (got.kind, got.status, got.owner) == ("stylize", JobStatus.QUEUED, "alice")
    assert got.params == {"model": "hayao"} and got.progress == {"done": 0, "failed": 0, "total": 1}
    assert got.webhook_url == "https://x/h" and got.error is None and got.started_at is None
    assert jobstore.get("missing") is None
    with pytest.raises(InvalidName):
        jobstore.create("stylize", "bad owner:x", {}, total=1)


def test_lifecycle_and_terminal_is_final(jobstore, redis_client):
    record, _ = jobstore.create("stylize", "alice", {}, total=1)
    assert jobstore.start(record.id)
    assert jobstore.start(record.id)  # a redelivered task may start again while running
    started = jobstore.get(record.id).started_at
    assert jobstore.succeed(record.id, {"output_key": "outputs/x/000000.png"})
    done = jobstore.get(record.id)
    assert done.status == JobStatus.SUCCEEDED and done.result == {"output_key": "outputs/x/000000.png"}
    assert done.started_at == started and done.finished_at >= started
    assert not jobstore.fail(record.id, "late", "too late")
    assert not jobstore.cancel(record.id)
    assert not jobstore.start(record.id)
    # Even a caller that "allows" it cannot move a terminal job.
    assert not jobstore.transition(record.id, JobStatus.RUNNING, set(JobStatus))
    assert jobstore.get(record.id).status == JobStatus.SUCCEEDED
    assert 0 < redis_client.ttl(JobStore.job_key(record.id)) <= 600


def test_partial_keeps_result_and_error_and_every_terminal_status_is_final(jobstore, redis_client):
    from workers import job_metrics
    from workers.jobstore import TERMINAL_STATUSES

    # The Lua scripts' terminal table is built from job_metrics.FINISHED_STATUSES: it must be the same set.
    assert set(job_metrics.FINISHED_STATUSES) == {s.value for s in TERMINAL_STATUSES}
    record, _ = jobstore.create("batch", "alice", {}, total=2)
    pubsub = jobstore.subscribe(record.id)
    jobstore.start(record.id)
    assert jobstore.partial(record.id, {"outputs": [0]}, "some_images_failed", "1 of 2 images failed")
    done = jobstore.get(record.id)
    assert done.status == JobStatus.PARTIAL and done.result == {"outputs": [0]}
    assert done.error == {"code": "some_images_failed", "message": "1 of 2 images failed"}
    assert done.finished_at is not None and redis_client.ttl(JobStore.job_key(record.id)) > 0
    events = []
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:  # running, then partial
        message = pubsub.get_message(timeout=1)
        if message is not None and message["type"] == "message":
            events.append(json.loads(message["data"]))
    pubsub.close()
    assert events[-1]["status"] == "partial" and events[-1]["error"]["code"] == "some_images_failed"
    for status in TERMINAL_STATUSES:
        other, _ = jobstore.create("batch", "alice", {}, total=1)
        jobstore.start(other.id)
        assert jobstore.transition(other.id, status, {JobStatus.RUNNING})
        assert not jobstore.transition(other.id, JobStatus.RUNNING, set(JobStatus)), status
        assert not jobstore.cancel(other.id) and not jobstore.set_progress(other.id, done=1), status
        assert jobstore.get(other.id).status == status


def test_expiry_is_set_only_on_terminal_and_covers_item_sets(jobstore, redis_client):
    record, _ = jobstore.create("batch", "alice", {}, total=3)
    jobstore.start(record.id)
    jobstore.mark_item_done(record.id, 0)
    jobstore.mark_item_failed(record.id, 1, "bad_image", "not an image")
    assert redis_client.ttl(JobStore.job_key(record.id)) == -1
    assert jobstore.fail(record.id, "boom", "worker error")
    for key in (JobStore.job_key(record.id), f"{JobStore.job_key(record.id)}:items"):
        assert 0 < redis_client.ttl(key) <= 600
    assert jobstore.get(record.id).error == {"code": "boom", "message": "worker error"}


def test_concurrent_transitions_only_one_wins(jobstore):
    for _ in range(5):
        record, _ = jobstore.create("stylize", "alice", {}, total=1)
        jobstore.start(record.id)
        outcomes = run_together(
            lambda i, job=record.id: (
                jobstore.succeed(job, {"by": i}) if i % 2 else jobstore.fail(job, "e", str(i))
            ),
            8,
        )
        assert outcomes.count(True) == 1
        final = jobstore.get(record.id)
        winner = outcomes.index(True)
        assert final.status == (JobStatus.SUCCEEDED if winner % 2 else JobStatus.FAILED)


def test_cancel_queued_is_immediate_running_is_a_flag(jobstore):
    queued, _ = jobstore.create("stylize", "alice", {}, total=1)
    assert jobstore.cancel(queued.id)
    assert jobstore.get(queued.id).status == JobStatus.CANCELED
    assert not jobstore.start(queued.id)  # the worker that later receives the task skips it
    running, _ = jobstore.create("train", "alice", {}, total=100)
    jobstore.start(running.id)
    assert not jobstore.is_cancel_requested(running.id)
    assert jobstore.cancel(running.id)
    assert jobstore.is_cancel_requested(running.id)
    assert jobstore.get(running.id).status == JobStatus.RUNNING
    assert jobstore.mark_canceled(running.id)
    assert jobstore.get(running.id).status == JobStatus.CANCELED
    assert not jobstore.cancel("missing")


def test_idempotency(jobstore):
    first, created = jobstore.create(
        "stylize", "alice", {"a": 1}, 1, idempotency_key="k-1", request_hash="h1"
    )
    again, created_again = jobstore.create(
        "stylize", "alice", {"a": 1}, 1, idempotency_key="k-1", request_hash="h1"
    )
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict) as info:
        jobstore.create("stylize", "alice", {"a": 2}, 1, idempotency_key="k-1", request_hash="h2")
    assert first.id in str(info.value) and "k-1" in str(info.value)
    other, created_other = jobstore.create("stylize", "bob", {}, 1, idempotency_key="k-1", request_hash="h1")
    assert created_other and other.id != first.id  # keys are per owner
    assert jobstore.get_by_idempotency_key("alice", "k-1", "h1").id == first.id
    assert jobstore.get_by_idempotency_key("alice", "unknown", "h1") is None
    with pytest.raises(IdempotencyConflict):
        jobstore.get_by_idempotency_key("alice", "k-1", "h2")


def test_concurrent_idempotent_creates_make_one_job(jobstore):
    results = run_together(
        lambda i: jobstore.create("batch", "alice", {}, 10, idempotency_key="same", request_hash="h"), 8
    )
    assert len({record.id for record, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1


def test_listing_pagination_filters_and_lazy_cleanup(jobstore, redis_client):
    ids = []
    for i in range(7):
        kind = "train" if i % 3 == 0 else "stylize"
        ids.append(jobstore.create(kind, "alice", {"i": i}, total=1)[0].id)
    jobstore.create("stylize", "bob", {}, total=1)
    seen, cursor = [], None
    while True:
        page, cursor = jobstore.list("alice", limit=3, cursor=cursor)
        assert len(page) <= 3
        seen += [record.id for record in page]
        if cursor is None:
            break
    assert seen == ids[::-1]  # newest first, each once, across pages
    trains, _ = jobstore.list("alice", kind="train")
    assert [r.params["i"] for r in trains] == [6, 3, 0]
    jobstore.start(ids[1])
    running, cursor = jobstore.list("alice", status="running")
    assert [r.id for r in running] == [ids[1]] and cursor is None
    redis_client.delete(JobStore.job_key(ids[2]))  # as if it had expired
    remaining, _ = jobstore.list("alice", limit=50)
    assert ids[2] not in [r.id for r in remaining] and len(remaining) == 6
    assert redis_client.zscore("animegan:owner:alice:jobs", ids[2]) is None
    with pytest.raises(InvalidCursor):
        jobstore.list("alice", cursor="garbage")


def test_pagination_with_equal_scores(jobstore, redis_client):
    ids = {jobstore.create("stylize", "carol", {}, total=1)[0].id for _ in range(5)}
    redis_client.zadd("animegan:owner:carol:jobs", {job_id: 1000 for job_id in ids})
    seen, cursor = [], None
    for _ in range(5):
        page, cursor = jobstore.list("carol", limit=2, cursor=cursor)
        seen += [record.id for record in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


def test_mark_item_done_exactly_once_under_concurrency(jobstore):
    record, _ = jobstore.create("batch", "alice", {}, total=20)
    # 8 threads each report all 20 items, as redelivered chunks would.
    results = run_together(lambda i: [jobstore.mark_item_done(record.id, n) for n in range(20)], 8)
    firsts = sum(row.count(True) for row in results)
    assert firsts == 20
    assert jobstore.get(record.id).progress["done"] == 20
    assert not jobstore.mark_item_failed(record.id, 3, "x", "already done")
    assert jobstore.mark_item_failed(record.id, 25, "bad_image", "cannot decode")
    assert jobstore.item_errors(record.id) == {25: {"code": "bad_image", "message": "cannot decode"}}
    assert jobstore.get(record.id).progress["failed"] == 1
    assert not jobstore.mark_item_done("missing", 0)


def test_progress_events_reach_subscribers_and_are_kept(jobstore):
    record, _ = jobstore.create("train", "alice", {}, total=100)
    jobstore.start(record.id)
    pubsub = jobstore.subscribe(record.id)
    try:
        assert jobstore.set_progress(record.id, done=10, step=10, phase="init", losses={"recon": 0.5})
        assert jobstore.append_progress(record.id, "samples", "runs/x/samples/000000010.png", keep_last=2)
        for step in (20, 30):
            jobstore.append_progress(record.id, "samples", f"s{step}", keep_last=2)
        assert jobstore.succeed(record.id, {"model": "m"})
        events = []
        deadline = time.monotonic() + 5
        while len(events) < 5 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message:
                events.append(json.loads(message["data"]))
    finally:
        pubsub.close()
    assert [e["event"] for e in events] == ["progress"] * 4 + ["status"]
    assert events[0]["progress"] == {
        "done": 10, "failed": 0, "total": 100, "step": 10, "phase": "init", "losses": {"recon": 0.5},
    }  # fmt: skip
    final = jobstore.get(record.id)
    assert final.progress["samples"] == ["s20", "s30"]
    assert final.last_event["event"] == "status" and final.last_event["status"] == "succeeded"
    assert not jobstore.set_progress(record.id, step=99)  # terminal: no more progress


def test_attempts_counter(jobstore):
    record, _ = jobstore.create("stylize", "alice", {}, total=1)
    assert [jobstore.add_attempt(record.id) for _ in range(3)] == [1, 2, 3]
    assert jobstore.get(record.id).attempts == 3
    assert jobstore.add_attempt("missing") == 0


def test_lease_exclusive_and_fenced(redis_client):
    lease = TrainingLease(redis_client)
    tokens = run_together(lambda i: lease.acquire("job1", f"worker{i}", ttl=5), 6)
    winners = [t for t in tokens if t is not None]
    assert len(winners) == 1
    first = winners[0]
    assert lease.check("job1", first) and lease.renew("job1", first, ttl=0.2)
    time.sleep(0.3)  # the holder stalls past its lease
    assert not lease.check("job1", first)
    second = lease.acquire("job1", "worker-new", ttl=5)
    assert second is not None and second > first
    assert not lease.renew("job1", first, ttl=5)  # the stale holder cannot extend the new lease
    assert not lease.release("job1", first)
    assert lease.check("job1", second) and lease.holder("job1") == "worker-new"
    assert lease.release("job1", second)
    assert lease.holder("job1") is None
    assert lease.acquire("job1", "again", ttl=1) > second


def test_works_with_a_bytes_client(redis_url):
    """The API and workers use decode_responses=True; a plain client (bytes replies) must work the same."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        store = JobStore(client, ttl_seconds=60)
        record, _ = store.create("batch", "dave", {"k": "v"}, total=2, idempotency_key="i", request_hash="h")
        assert (
            store.create("batch", "dave", {}, total=2, idempotency_key="i", request_hash="h")[0].id
            == record.id
        )
        assert store.start(record.id) and store.mark_item_done(record.id, 0)
        assert (
            store.mark_item_failed(record.id, 1, "bad", "x")
            and store.item_errors(record.id)[1]["code"] == "bad"
        )
        assert store.cancel(record.id) and store.is_cancel_requested(record.id)
        page, _ = store.list("dave")
        assert [r.id for r in page] == [record.id] and page[0].progress["done"] == 1
        assert store.get_by_idempotency_key("dave", "i", "h").id == record.id
    finally:
        client.close()


def test_iter_records_sees_every_job_once(jobstore):
    ids = {jobstore.create("batch", f"owner{i % 2}", {}, total=2)[0].id for i in range(5)}
    jobstore.mark_item_done(next(iter(ids)), 0)  # creates a companion ':items' key, which must be skipped
    assert sorted(r.id for r in jobstore.iter_records()) == sorted(ids)
    assert len(list(jobstore.iter_records(max_records=2))) == 2


def test_a_redelivered_segment_replaces_its_entry_in_the_progress_list(jobstore):
    """progress.segments lists each segment once: the second start of segment 1 (a redelivery) replaces the
    first, and entries without the key, or of other segments, stay."""
    record, _ = jobstore.create("train", "alice", {}, total=100)
    jobstore.start(record.id)
    for segment, step in ((0, 0), (1, 40), (1, 60), (2, 80)):
        entry = {"segment": segment, "resumed_from_step": step}
        assert jobstore.append_progress(record.id, "segments", entry, keep_last=20, unique_by="segment")
    assert jobstore.get(record.id).progress["segments"] == [
        {"segment": 0, "resumed_from_step": 0},
        {"segment": 1, "resumed_from_step": 60},
        {"segment": 2, "resumed_from_step": 80},
    ]


def test_expire_due_ends_queued_jobs_and_flags_running_ones(jobstore, redis_client):
    from workers import job_metrics, redis_keys

    now = time.time()
    queued, _ = jobstore.create("stylize", "alice", {}, total=1, deadline=now + 10)
    running, _ = jobstore.create("batch", "alice", {}, total=4, deadline=now + 10)
    later, _ = jobstore.create("stylize", "alice", {}, total=1, deadline=now + 100)
    none, _ = jobstore.create("stylize", "alice", {}, total=1)
    jobstore.start(running.id)
    assert jobstore.get(queued.id).deadline == now + 10
    assert redis_client.zcard(redis_keys.DEADLINES) == 3  # jobs without a deadline are not in the set
    assert jobstore.expire_due(now + 5) == {}
    assert not jobstore.is_cancel_requested(running.id)
    assert jobstore.expire_due(now + 11) == {queued.id: 1, running.id: 2}
    expired = jobstore.get(queued.id)
    assert expired.status == JobStatus.EXPIRED and expired.started_at is None
    assert expired.error["code"] == "deadline_exceeded" and "never ran" in expired.error["message"]
    # The running one stops at its worker's next check, which ends it expired (not canceled).
    assert jobstore.get(running.id).status == JobStatus.RUNNING
    assert jobstore.is_cancel_requested(running.id) and jobstore.stop_reason(running.id) == "deadline"
    assert jobstore.expire_due(now + 12) == {}  # swept entries leave the set; a second sweep does nothing
    assert redis_client.zrange(redis_keys.DEADLINES, 0, -1) == [later.id]
    assert jobstore.get(none.id).status == JobStatus.QUEUED and jobstore.stop_reason(none.id) is None
    figures = redis_client.hgetall(redis_keys.METRICS)
    assert figures[job_metrics.finished_field("stylize", "expired")] == "1"
    assert figures[job_metrics.active_field("stylize", "queued")] == "2"
    # A user's cancel is told apart from a deadline.
    jobstore.cancel(later.id)
    assert jobstore.stop_reason(later.id) == "user" and jobstore.get(later.id).status == JobStatus.CANCELED
