"""Per-key request rate and concurrent-job limits, counted in Redis so they hold across API replicas.

Both answer 429 with a Retry-After header saying when to try again.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import cast

import redis

from api.errors import ApiError
from workers import redis_keys

logger = logging.getLogger(__name__)

# A reservation whose request died before turning it into a job frees its slot after this long.
RESERVATION_TTL_SECONDS = 120
# Retry-After for a full concurrent-job quota: jobs usually end within seconds.
ACTIVE_RETRY_AFTER_SECONDS = 5

# KEYS: the tenant's jobs holding slots, its reservations. ARGV: limit, now, token, reservation TTL. Drops the
# reservations of requests that died, then takes a slot only if fewer than the limit are held: atomic, so two
# replicas cannot both take the last one, and O(log n) whatever the limit (the job store's terminal scripts give
# a job's slot back as it ends: workers.job_metrics.TERMINAL_LUA, release_slot).
_RESERVE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[4]))
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], 86400)
return 1
"""
# How often a full quota may be checked job by job (slots of jobs that ended without giving theirs back: a job
# created before slots were released at the end, or a record that expired): at most once a minute per tenant.
PRUNE_EVERY_SECONDS = 60


class RateLimiter:
    """Fixed-window counter per tenant: INCR of a key named by the window's index, expiring with the window."""

    def __init__(self, client: redis.Redis, limit: int, window_seconds: int):
        self.client = client
        self.limit = limit
        self.window = window_seconds

    def hit(self, tenant: str, now: float | None = None) -> None:
        """Count one request; raise ApiError 429 with Retry-After once the window's budget is spent."""
        now = time.time() if now is None else now
        window_index = int(now // self.window)
        key = redis_keys.rate_window(tenant, window_index)
        pipe = self.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.window + 1)
        count, _ = pipe.execute()
        if count > self.limit:
            retry_after = max(1, math.ceil((window_index + 1) * self.window - now))
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.limit} requests in {self.window} s for this API key; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


class ActiveJobSlots:
    """At most `limit` queued or running jobs per tenant: the jobs holding slots (a sorted set that the job store's
    terminal transitions remove each job from as it ends) plus the reservations of creates in flight.

    A slot is reserved before the job is created (atomically, in Lua) and becomes the job's once it exists; a full
    quota answers 429 after one script call, however many slots the tenant holds.
    """

    def __init__(self, client: redis.Redis, limit: int, is_active: Callable[[str], bool]):
        self.client = client
        self.limit = limit
        self.is_active = is_active
        self._reserve = client.register_script(_RESERVE_LUA)

    def _keys(self, tenant: str) -> list[str]:
        return [redis_keys.active_jobs(tenant), redis_keys.active_reservations(tenant)]

    def prune(self, tenant: str) -> int:
        """Drop held slots of jobs that ended without giving theirs back; one pipelined read for all of them."""
        key = redis_keys.active_jobs(tenant)
        members = [
            m.decode() if isinstance(m, bytes) else m for m in cast(list, self.client.zrange(key, 0, -1))
        ]
        stale = [m for m in members if not self.is_active(m.removeprefix("j:"))]
        if stale:
            self.client.zrem(key, *stale)
        return len(stale)

    def _try(self, tenant: str, token: str) -> bool:
        return bool(
            self._reserve(
                keys=self._keys(tenant), args=[self.limit, time.time(), token, RESERVATION_TTL_SECONDS]
            )
        )

    def reserve(self, tenant: str) -> str:
        """Take a slot; return the reservation token; raise 429 when the tenant's slots are all held."""
        token = f"r:{uuid.uuid4().hex}"
        if self._try(tenant, token):
            return token
        gate = redis_keys.active_prune_gate(tenant)
        if (
            self.client.set(gate, "1", nx=True, ex=PRUNE_EVERY_SECONDS)
            and self.prune(tenant)
            and self._try(tenant, token)
        ):
            return token
        raise ApiError(
            429,
            "too_many_active_jobs",
            f"this API key already has {self.limit} queued or running jobs; wait for one to finish "
            f"(retry in {ACTIVE_RETRY_AFTER_SECONDS} s) or cancel one",
            headers={"Retry-After": str(ACTIVE_RETRY_AFTER_SECONDS)},
        )

    def assign(self, tenant: str, token: str, job_id: str) -> None:
        """Turn a reservation into the job that now holds the slot; the job's record names the set, so its terminal
        transition gives the slot back. Called before the job's first task is sent, so it cannot have ended yet."""
        jobs_key, reservations = self._keys(tenant)
        pipe = self.client.pipeline()
        pipe.zrem(reservations, token)
        pipe.zadd(jobs_key, {f"j:{job_id}": time.time()})
        pipe.hset(redis_keys.job(job_id), "active_key", jobs_key)
        pipe.execute()

    def release(self, tenant: str, token: str) -> None:
        """Give back a reservation that did not become a new job (idempotent replay, failed request)."""
        self.client.zrem(self._keys(tenant)[1], token)
