"""Job records in Redis: atomic status transitions (Lua), per-owner listing, idempotency, batch item
accounting, cancel flags, redelivery counts and progress events (pub/sub + the latest event in the record).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, cast

from workers import job_metrics, redis_keys
from workers import jobstore_lua as lua
from workers.contracts.registry import KINDS
from workers.exceptions import IdempotencyConflict, InvalidCursor, InvalidName
from workers.json_types import JSONObject, JSONValue
from workers.keys import SEGMENT_RE

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from redis.asyncio.client import PubSub as AsyncPubSub
    from redis.client import PubSub

    from workers.settings import ServiceSettings

logger = logging.getLogger(__name__)

_LIST_SCAN = 200  # index entries read per round trip while filtering a listing
# The longest Idempotency-Key a create takes (the API's header limit and check are this one).
MAX_IDEMPOTENCY_KEY = 200


class JobStatus(StrEnum):
    """A job's lifecycle (README, "Job states"): queued -> running -> one terminal status, which is final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every item of it succeeded
    PARTIAL = "partial"  # a batch some of whose images failed (result: the ones done, error: a summary)
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"  # its deadline passed before it ended (it did not run, or was stopped)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.EXPIRED}
)
# The statuses that leave a result to download (a partial batch: the images that were done).
RESULT_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.PARTIAL})


@dataclass(frozen=True)
class JobRecord:
    """One job as stored; `progress` always holds done, failed and total plus kind-specific fields
    (training: step, epoch, phase, losses, samples, checkpoints)."""

    id: str
    kind: str  # a name of workers.contracts.registry.KINDS
    owner: str
    status: JobStatus
    params: JSONObject
    progress: JSONObject
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    error: dict[str, str] | None
    result: JSONObject | None
    webhook_url: str | None
    cancel_requested: bool
    last_event: JSONObject | None
    deadline: float | None = None  # epoch seconds after which it expires (api.job_options); None: never
    # The webhook events its create asked for (workers.contracts.webhooks.WebhookEvent values).
    webhook_events: tuple[str, ...] = ("completed",)
    queue_score: float | None = None  # send time of its first task (workers.queue_positions); None: not sent
    storage_id: str | None = (
        None  # the marker id of the storage its inputs went to (workers.storage_identity)
    )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def to_dict(self) -> JSONObject:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def deadline_text(deadline: float) -> str:
    """A deadline as users wrote it: RFC 3339 in UTC, to the second."""
    return datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id() -> str:
    """Random, unguessable, and a valid storage key segment (the API may store inputs before create())."""
    return uuid.uuid4().hex


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidName(f"job kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not SEGMENT_RE.match(owner):
        raise InvalidName(f"owner id {owner!r} must be 1-128 characters of letters, digits and ._-@+=")
    return owner


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _loads(value: bytes | str | None) -> JSONValue:
    return json.loads(_text(value)) if value not in (None, b"", "") else None


def _float(value: bytes | str | None) -> float | None:
    return float(_text(value)) if value not in (None, b"", "") else None


class JobStore:
    """Job records in one Redis database; safe to share between threads (redis-py pools connections)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        ttl_seconds: int = 7 * 24 * 3600,
        idempotency_ttl_seconds: int = 86400,
    ):
        self.redis = redis_client
        self.ttl_seconds = int(ttl_seconds)
        self.idempotency_ttl_seconds = int(idempotency_ttl_seconds)
        self._create = redis_client.register_script(lua.CREATE)
        self._transition = redis_client.register_script(lua.TRANSITION)
        self._cancel = redis_client.register_script(lua.CANCEL)
        self._mark_item = redis_client.register_script(lua.MARK_ITEM)
        self._set_progress = redis_client.register_script(lua.SET_PROGRESS)
        self._add_attempt = redis_client.register_script(lua.ADD_ATTEMPT)
        self._expire = redis_client.register_script(lua.EXPIRE)
        self._delete = redis_client.register_script(lua.DELETE)
        # Called with the job id after each progress update that moved (workers: the "progress" webhook).
        self.on_progress: Callable[[str], None] | None = None

    @classmethod
    def from_settings(cls, redis_client: redis.Redis, settings: ServiceSettings) -> JobStore:
        return cls(redis_client, settings.job_ttl_seconds, settings.idempotency_ttl_seconds)

    # Redis key names: every key of a job starts with its hash key, so they are easy to find and expire.
    @staticmethod
    def job_key(job_id: str) -> str:
        return redis_keys.job(job_id)

    @staticmethod
    def events_channel(job_id: str) -> str:
        """Pub/sub channel of a job's progress events (JSON objects); the API streams it as SSE."""
        return redis_keys.job_events(job_id)

    def _job_keys(self, job_id: str) -> list[str]:
        return [redis_keys.job(job_id), redis_keys.job_items(job_id), redis_keys.job_item_errors(job_id)]

    @staticmethod
    def _metrics_keys(now: float) -> list[str]:
        """The keys a transition that may end a job counts into (workers.job_metrics)."""
        return [redis_keys.METRICS, redis_keys.metrics_images_slot(job_metrics.image_slot(now))]

    @staticmethod
    def _owner_index(owner: str) -> str:
        return redis_keys.owner_jobs(owner)

    @staticmethod
    def _idempotency_key(owner: str, key: str) -> str:
        # Owners never contain ':'; the client's key is free text, so only its digest goes in the name.
        return redis_keys.job_idempotency(owner, hashlib.sha256(key.encode()).hexdigest())

    def create(
        self,
        kind: str,
        owner: str,
        params: JSONObject,
        total: int,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        webhook_url: str | None = None,
        job_id: str | None = None,
        deadline: float | None = None,
        webhook_events: tuple[str, ...] = (),
        storage_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Store a queued job; with an idempotency key, a repeat returns (existing record, False). A job with a
        `deadline` (epoch seconds) joins the deadlines set that expire_due() sweeps."""
        check_kind(kind)
        check_owner(owner)
        job_id = job_id or new_job_id()
        if not SEGMENT_RE.match(job_id):
            raise InvalidName(f"job id {job_id!r} must be letters, digits and ._-@+= (see new_job_id)")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidName(
                f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters, got {len(idempotency_key)}"
            )
        now = time.time()
        fields: dict[str, str | int] = {
            "id": job_id, "kind": kind, "owner": owner, "status": JobStatus.QUEUED.value,
            "params": json.dumps(params), "progress": "{}", "done": 0, "failed": 0, "total": int(total),
            "created_at": repr(now), "updated_at": repr(now), "attempts": 0, "cancel": 0,
            "webhook_url": webhook_url or "", "deadline": repr(float(deadline)) if deadline is not None else "",
            "webhook_events": ",".join(webhook_events), "storage_id": storage_id or "",
        }  # fmt: skip
        idem = self._idempotency_key(owner, idempotency_key) if idempotency_key else redis_keys.NO_IDEMPOTENCY
        flat = [item for pair in fields.items() for item in pair]
        existing_id, existing_hash, created = self._create(
            keys=[self.job_key(job_id), self._owner_index(owner), idem, redis_keys.METRICS, redis_keys.DEADLINES],
            args=[
                1 if idempotency_key else 0, job_id, int(now * 1_000_000), self.idempotency_ttl_seconds,
                request_hash or "", redis_keys.PREFIX, kind, *flat,
            ],
        )  # fmt: skip
        existing_id, existing_hash = _text(existing_id), _text(existing_hash)
        if not int(created) and existing_hash != (request_hash or ""):
            raise IdempotencyConflict(owner, idempotency_key or "", existing_id)
        if int(created):
            # The record is exactly the fields just written: built here, without reading them back.
            made = self._parse({k: str(v) for k, v in fields.items()})
            assert made is not None  # parsed from a non-empty mapping
            return made, True
        record = self.get(existing_id)
        if record is None:  # only if the record expired in the microseconds since the script ran
            raise RuntimeError(f"job {existing_id} vanished right after create; retry the request")
        return record, bool(int(created))

    def get_by_idempotency_key(
        self, owner: str, idempotency_key: str, request_hash: str | None
    ) -> JobRecord | None:
        """The job an earlier request with this key created (the API checks before storing inputs)."""
        value = self.redis.get(self._idempotency_key(check_owner(owner), idempotency_key))
        if value is None:
            return None
        job_id, _, stored_hash = _text(value).partition(":")
        record = self.get(job_id)
        if record is not None and stored_hash != (request_hash or ""):
            raise IdempotencyConflict(owner, idempotency_key, job_id)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        return self._parse(self.redis.hgetall(self.job_key(job_id)))

    @staticmethod
    def _parse(raw: dict) -> JobRecord | None:
        if not raw:
            return None
        h = {_text(k): _text(v) for k, v in raw.items()}
        progress = {"done": int(h["done"]), "failed": int(h["failed"]), "total": int(h["total"])}
        progress.update(_loads(h.get("progress")) or {})
        return JobRecord(
            id=h["id"],
            kind=h["kind"],
            owner=h["owner"],
            status=JobStatus(h["status"]),
            params=_loads(h["params"]) or {},
            progress=progress,
            created_at=float(h["created_at"]),
            updated_at=float(h["updated_at"]),
            started_at=_float(h.get("started_at")),
            finished_at=_float(h.get("finished_at")),
            attempts=int(h["attempts"]),
            error=_loads(h.get("error")),
            result=_loads(h.get("result")),
            webhook_url=h.get("webhook_url") or None,
            cancel_requested=h.get("cancel") == "1",
            last_event=_loads(h.get("last_event")),
            deadline=_float(h.get("deadline")),
            webhook_events=tuple((h.get("webhook_events") or "completed").split(",")),
            queue_score=_float(h.get("queue_score")),
            storage_id=h.get("storage_id") or None,
        )

    def iter_records(self, max_records: int = 10_000) -> Iterator[JobRecord]:
        """Every retained job record, in no order (the reconciler, admin); SCAN, so it never blocks Redis."""
        seen = 0
        for key in self.redis.scan_iter(match=redis_keys.JOB_PATTERN, count=1000):
            name = _text(key)
            if name.count(":") != 2:  # companion keys (":items", ":item_errors") have one more part
                continue
            record = self._parse(self.redis.hgetall(name))
            if record is not None:
                yield record
                seen += 1
                if seen >= max_records:
                    return

    def list(
        self,
        owner: str,
        kind: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """An owner's jobs, newest first, optionally filtered; pass the returned cursor to get the next page.

        Index entries whose record has expired are removed here (records expire on their own).
        """
        index = self._owner_index(check_owner(owner))
        if kind is not None:
            check_kind(kind)
        status = JobStatus(status) if status is not None else None
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit {limit} must be between 1 and 1000")
        max_score, after_id = self._parse_cursor(cursor)
        found: list[tuple[JobRecord, int]] = []
        offset = 0
        # Unfiltered, limit + 1 entries fill a page and tell whether another follows; filtered, read ahead.
        batch = limit + 1 if kind is None and status is None else max(limit + 1, _LIST_SCAN)
        while len(found) <= limit:
            entries = self.redis.zrevrangebyscore(
                index, max_score, "-inf", start=offset, num=batch, withscores=True
            )
            if not entries:
                break
            offset += len(entries)
            # Equal scores come in reverse member order; skip those at or before the cursor's job.
            scored = [(_text(m), int(s)) for m, s in cast(list[tuple[bytes | str, float]], entries)]
            scored = [(m, s) for m, s in scored if not (after_id and s == max_score and m >= after_id)]
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in scored:
                pipe.hgetall(self.job_key(member))
            expired = []
            for (member, score), raw in zip(scored, pipe.execute(), strict=True):
                record = self._parse(raw)
                if record is None:
                    expired.append(member)
                elif (kind is None or record.kind == kind) and (status is None or record.status == status):
                    found.append((record, score))
            if expired:
                self.redis.zrem(index, *expired)
                offset -= len(expired)  # the removed entries no longer occupy index positions
        page = found[:limit]
        next_cursor = f"{page[-1][1]}:{page[-1][0].id}" if len(found) > limit else None
        return [record for record, _ in page], next_cursor

    @staticmethod
    def _parse_cursor(cursor: str | None) -> tuple[int | str, str | None]:
        if not cursor:
            return "+inf", None
        score, _, job_id = cursor.partition(":")
        if not score.isdigit() or not SEGMENT_RE.match(job_id):
            raise InvalidCursor(f"cursor {cursor!r} is not one this service returned; drop it to start over")
        return int(score), job_id

    def _event(self, job_id: str, event_type: str, **fields: JSONValue) -> str:
        return json.dumps({"event": event_type, "job_id": job_id, "ts": time.time(), **fields})

    def transition(
        self,
        job_id: str,
        to: JobStatus | str,
        allowed_from: set[JobStatus],
        result: JSONObject | None = None,
        error: JSONObject | None = None,
    ) -> bool:
        """Move to `to` if the current status is in `allowed_from`; a terminal status never changes.

        `result` and `error` are stored as JSON (a partial batch has both). Publishes a status event when it moves.
        """
        to = JobStatus(to)
        allowed = [JobStatus(s).value for s in allowed_from]
        extra: JSONObject = {}
        if result is not None:
            extra["result"] = result
        if error is not None:
            extra["error"] = error
        event = self._event(job_id, "status", status=to.value, **extra)
        now = time.time()
        moved = self._transition(
            keys=[*self._job_keys(job_id), *self._metrics_keys(now)],
            args=[to.value, repr(now), self.ttl_seconds, int(to.is_terminal),
                  json.dumps(result) if result is not None else "", json.dumps(error) if error is not None else "",
                  event, self.events_channel(job_id), *allowed],
        )  # fmt: skip
        return bool(int(moved))

    def start(self, job_id: str) -> bool:
        """queued -> running; also True when already running (a redelivered task, or another batch chunk)."""
        return self.transition(job_id, JobStatus.RUNNING, {JobStatus.QUEUED, JobStatus.RUNNING})

    def succeed(self, job_id: str, result: JSONObject) -> bool:
        return self.transition(job_id, JobStatus.SUCCEEDED, {JobStatus.RUNNING}, result=result)

    def partial(self, job_id: str, result: JSONObject, code: str, message: str) -> bool:
        """running -> partial: some items succeeded (`result`), the others failed (`message` sums them up)."""
        error = {"code": code, "message": message}
        return self.transition(job_id, JobStatus.PARTIAL, {JobStatus.RUNNING}, result=result, error=error)

    def fail(self, job_id: str, code: str, message: str) -> bool:
        error = {"code": code, "message": message}
        return self.transition(job_id, JobStatus.FAILED, {JobStatus.QUEUED, JobStatus.RUNNING}, error=error)

    def mark_canceled(self, job_id: str) -> bool:
        """A worker saw the cancel flag and stopped: running -> canceled."""
        return self.transition(job_id, JobStatus.CANCELED, {JobStatus.QUEUED, JobStatus.RUNNING})

    def cancel(self, job_id: str) -> bool:
        """Request cancellation: sets the flag; a queued job becomes canceled at once, a running one when its
        worker next checks. False if the job is missing or already terminal."""
        event = self._event(job_id, "status", status=JobStatus.CANCELED.value)
        now = time.time()
        result = self._cancel(
            keys=[*self._job_keys(job_id), *self._metrics_keys(now)],
            args=[repr(now), self.ttl_seconds, event, self.events_channel(job_id)],
        )
        return bool(int(result))

    def is_cancel_requested(self, job_id: str) -> bool:
        """True once the job should stop: its owner canceled it, or its deadline passed (stop_reason says which)."""
        flag, deadline = self.redis.hmget(self.job_key(job_id), ["cancel", "deadline"])
        if flag is not None and _text(flag) == "1":
            return True
        due = _float(deadline)
        return due is not None and time.time() >= due

    def stop_reason(self, job_id: str) -> str | None:
        """Why a job is to stop: "user" (POST cancel), "deadline" (it passed), or None (it is not to stop)."""
        flag, reason, deadline = self.redis.hmget(
            self.job_key(job_id), ["cancel", "cancel_reason", "deadline"]
        )
        if flag is not None and _text(flag) == "1":
            return _text(reason) if reason else "user"
        due = _float(deadline)
        return "deadline" if due is not None and time.time() >= due else None

    def mark_expired(self, job_id: str, message: str) -> bool:
        """A worker stopped the job (or never started it) because its deadline passed: -> expired."""
        error = {"code": "deadline_exceeded", "message": message}
        return self.transition(job_id, JobStatus.EXPIRED, {JobStatus.QUEUED, JobStatus.RUNNING}, error=error)

    def expire(self, job_id: str, now: float | None = None) -> int:
        """Enforce a passed deadline (Lua EXPIRE): 1 a queued job expired here, 2 a running one was told to stop,
        0 the job had already ended, -1 not due."""
        now = time.time() if now is None else now
        record = self.get(job_id)
        when = deadline_text(record.deadline) if record is not None and record.deadline else "its deadline"
        message = f"the deadline ({when}) passed while the job was queued; it never ran"
        error = {"code": "deadline_exceeded", "message": message}
        event = self._event(job_id, "status", status=JobStatus.EXPIRED.value, error=error)
        return int(
            self._expire(
                keys=[*self._job_keys(job_id), *self._metrics_keys(now), redis_keys.DEADLINES],
                args=[
                    repr(now),
                    self.ttl_seconds,
                    job_id,
                    json.dumps(error),
                    event,
                    self.events_channel(job_id),
                ],
            )
        )

    def expire_due(self, now: float | None = None, limit: int = 200) -> dict[str, int]:
        """Enforce every deadline that has passed (the API sweeps this each second): job id -> expire()'s answer."""
        now = time.time() if now is None else now
        due = cast(
            list[bytes | str], self.redis.zrangebyscore(redis_keys.DEADLINES, "-inf", now, start=0, num=limit)
        )
        return {_text(job_id): self.expire(_text(job_id), now) for job_id in due}

    def delete(self, job_id: str, owner: str) -> int:
        """Remove an ended job's record and every Redis key of it: 1 done, 0 not ended yet, -1 no such job."""
        companions = [
            redis_keys.job_items(job_id), redis_keys.job_item_errors(job_id), redis_keys.job_video_segments(job_id),
            redis_keys.job_video_frames(job_id), redis_keys.webhook_progress_gate(job_id),
            redis_keys.webhook_progress_seq(job_id),
        ]  # fmt: skip
        keys = [
            self.job_key(job_id),
            self._owner_index(check_owner(owner)),
            redis_keys.DEADLINES,
            *companions,
        ]
        return int(self._delete(keys=keys, args=[job_id]))

    def mark_item_done(self, job_id: str, index: int) -> bool:
        """Count batch item `index` as done; True only the first time (a redelivered chunk does not recount)."""
        return bool(int(self._mark_item(keys=self._job_keys(job_id), args=[int(index), "done", ""])))

    def mark_item_failed(self, job_id: str, index: int, code: str, message: str) -> bool:
        """Count item `index` as failed (a bad image fails its item, not the batch); True only the first time."""
        error = json.dumps({"code": code, "message": message})
        return bool(int(self._mark_item(keys=self._job_keys(job_id), args=[int(index), "failed", error])))

    def item_errors(self, job_id: str) -> dict[int, dict[str, str]]:
        raw = self.redis.hgetall(self._job_keys(job_id)[2])
        return {int(_text(k)): json.loads(_text(v)) for k, v in raw.items()}

    def mark_segment_written(self, job_id: str, segment: int) -> bool:
        """Count video segment `segment` as written; True only the first time (a redelivery does not recount)."""
        key = redis_keys.job_video_segments(job_id)
        pipe = self.redis.pipeline()
        pipe.sadd(key, int(segment))
        pipe.expire(key, self.ttl_seconds)
        added, _ = pipe.execute()
        return bool(added)

    def segments_written(self, job_id: str) -> set[int]:
        """The video segments of a job whose output is written."""
        return {int(_text(i)) for i in self.redis.smembers(redis_keys.job_video_segments(job_id))}

    def record_segment_frames(self, job_id: str, segment: int, frames: int) -> int:
        """Frames stylized so far in video segment `segment`; returns the job's sum over its segments."""
        key = redis_keys.job_video_frames(job_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, str(segment), int(frames))
        pipe.expire(key, self.ttl_seconds)
        pipe.hvals(key)
        _, _, counts = pipe.execute()
        return sum(int(_text(v)) for v in counts)

    def set_progress(self, job_id: str, **fields: JSONValue) -> bool:
        """Merge fields into the progress (done/total are counters of their own) and publish a progress event.
        False if the job is missing or terminal."""
        counters = {
            name: int(fields.pop(name)) if fields.get(name) is not None else "" for name in ("done", "total")
        }
        result = self._set_progress(
            keys=[self.job_key(job_id)],
            args=[json.dumps(fields), counters["done"], counters["total"], repr(time.time()),
                  self.events_channel(job_id), job_id, "", 0, "", ""],
        )  # fmt: skip
        return self._progressed(job_id, bool(int(result)))

    def append_progress(
        self,
        job_id: str,
        field: str,
        item: JSONValue,
        keep_last: int | None = None,
        unique_by: str | None = None,
    ) -> bool:
        """Append to a list in the progress (training samples, checkpoints), keeping the newest `keep_last`;
        with `unique_by`, an earlier item with the same value of that key is replaced (a redelivered segment)."""
        result = self._set_progress(
            keys=[self.job_key(job_id)],
            args=["{}", "", "", repr(time.time()), self.events_channel(job_id), job_id,
                  field, keep_last or 0, json.dumps(item), unique_by or ""],
        )  # fmt: skip
        return self._progressed(job_id, bool(int(result)))

    def _progressed(self, job_id: str, moved: bool) -> bool:
        if moved and self.on_progress is not None:
            self.on_progress(job_id)
        return moved

    def add_attempt(self, job_id: str, unit: str = "job") -> int:
        """Count one more lost delivery of the task running `unit` of the job (a batch chunk, a training
        segment: see workers.jobs.begin); the unit's count since its last progress, 0 if the job does not exist."""
        return int(
            self._add_attempt(keys=[self.job_key(job_id)], args=[repr(time.time()), f"attempts:{unit}"])
        )

    def reset_attempts(self, job_id: str, unit: str = "job") -> None:
        """The unit made progress (an image written, a checkpoint uploaded): the deliveries lost before it
        no longer count toward the redelivery cap, so failovers spread over a long job never fail it."""
        self.redis.hdel(self.job_key(job_id), f"attempts:{unit}")

    def subscribe(self, job_id: str) -> PubSub:
        """A redis PubSub subscribed to the job's events; read with get_message(); close() when done."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.events_channel(job_id))
        return pubsub


class AsyncJobEvents:
    """A job's record and its event channel on a redis.asyncio client: the API's event streams wait on the event
    loop and hold no thread each (a thread per stream starved the pool that sync routes and probes run on)."""

    def __init__(self, redis_client: redis.asyncio.Redis, max_streams: int) -> None:
        self.redis = redis_client
        self.max_streams = max_streams
        self.open_streams = 0  # changed on the event loop only

    async def get(self, job_id: str) -> JobRecord | None:
        return JobStore._parse(await self.redis.hgetall(redis_keys.job(job_id)))

    async def subscribe(self, job_id: str) -> AsyncPubSub:
        """A redis.asyncio PubSub subscribed to the job's events; `await get_message(timeout=...)`, then
        `await aclose()`."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(redis_keys.job_events(job_id))
        return pubsub
