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

# Take a slot only if fewer than ARGV[1] are held; atomic so two replicas cannot both take the last one.
_RESERVE_LUA = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


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
    """At most `limit` queued or running jobs per tenant, held as a sorted set of job ids and reservations.

    A slot is reserved before the job is created (atomically, in Lua) and becomes the job's id once it
    exists; finished jobs are pruned lazily with `is_active` (the JobStore's view) whenever the set is full.
    """

    def __init__(self, client: redis.Redis, limit: int, is_active: Callable[[str], bool]):
        self.client = client
        self.limit = limit
        self.is_active = is_active
        self._reserve = client.register_script(_RESERVE_LUA)

    def _key(self, tenant: str) -> str:
        return redis_keys.active_jobs(tenant)

    def prune(self, tenant: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        key = self._key(tenant)
        stale = []
        for raw, score in cast(
            list[tuple[bytes | str, float]], self.client.zrange(key, 0, -1, withscores=True)
        ):
            member = raw.decode() if isinstance(raw, bytes) else raw
            if member.startswith("r:"):
                if now - score > RESERVATION_TTL_SECONDS:
                    stale.append(member)
            elif not self.is_active(member.removeprefix("j:")):
                stale.append(member)
        if stale:
            self.client.zrem(key, *stale)

    def reserve(self, tenant: str) -> str:
        """Take a slot; return the reservation token; raise 429 when the tenant's slots are all held."""
        token = f"r:{uuid.uuid4().hex}"
        key = self._key(tenant)
        if self._reserve(keys=[key], args=[self.limit, time.time(), token]):
            return token
        self.prune(tenant)
        if self._reserve(keys=[key], args=[self.limit, time.time(), token]):
            return token
        raise ApiError(
            429,
            "too_many_active_jobs",
            f"this API key already has {self.limit} queued or running jobs; wait for one to finish "
            f"(retry in {ACTIVE_RETRY_AFTER_SECONDS} s) or cancel one",
            headers={"Retry-After": str(ACTIVE_RETRY_AFTER_SECONDS)},
        )

    def assign(self, tenant: str, token: str, job_id: str) -> None:
        """Turn a reservation into the job that now holds the slot."""
        pipe = self.client.pipeline()
        pipe.zrem(self._key(tenant), token)
        pipe.zadd(self._key(tenant), {f"j:{job_id}": time.time()})
        pipe.execute()

    def release(self, tenant: str, token: str) -> None:
        """Give back a reservation that did not become a new job (idempotent replay, failed request)."""
        self.client.zrem(self._key(tenant), token)
