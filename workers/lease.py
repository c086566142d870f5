"""Training lease with a fencing token: at most one worker trains a job at a time, and a worker that lost its
lease (paused, partitioned, then resumed) is told so before it commits anything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from workers import redis_keys

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

FENCE_TTL_SECONDS = 30 * 24 * 3600  # the fence counter outlives any training run, so tokens never repeat

# KEYS: lease, fence counter. ARGV: holder, ttl_ms, fence ttl s. Returns the new token, or nil if held.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local token = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: token, ttl_ms. Extends the lease only for its current token.
_RENEW = """
local value = redis.call('GET', KEYS[1])
if not value or string.sub(value, 1, string.find(value, ':', 1, true) - 1) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: token. Deletes the lease only for its current token.
_RELEASE = """
local value = redis.call('GET', KEYS[1])
if not value or string.sub(value, 1, string.find(value, ':', 1, true) - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


class TrainingLease:
    """acquire(job, holder, ttl) -> token | None; renew/release/check with that token.

    Tokens come from a per-job counter that only grows, so a later holder always has a larger token: a
    stale holder's renew, release and check all fail once another worker has taken over.
    """

    def __init__(self, redis_client: redis.Redis) -> None:
        self.redis = redis_client
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._renew = redis_client.register_script(_RENEW)
        self._release = redis_client.register_script(_RELEASE)

    @staticmethod
    def lease_key(job_id: str) -> str:
        return redis_keys.lease(job_id)

    @staticmethod
    def fence_key(job_id: str) -> str:
        return redis_keys.lease_fence(job_id)

    def acquire(self, job_id: str, holder: str, ttl: float) -> int | None:
        """Take the lease for `ttl` seconds; None while someone else holds it."""
        if ":" in holder:
            raise ValueError(f"lease holder {holder!r} must not contain ':'")
        token = self._acquire(
            keys=[self.lease_key(job_id), self.fence_key(job_id)],
            args=[holder, _ms(ttl), FENCE_TTL_SECONDS],
        )
        if token is None:
            logger.info("lease of job %s is held by %s", job_id, self.holder(job_id))
            return None
        return int(token)

    def renew(self, job_id: str, token: int, ttl: float) -> bool:
        """Extend the lease; False means it was lost (expired and maybe taken): stop and commit nothing."""
        return bool(int(self._renew(keys=[self.lease_key(job_id)], args=[int(token), _ms(ttl)])))

    def release(self, job_id: str, token: int) -> bool:
        """Give the lease up (end of a segment); a stale token releases nothing."""
        return bool(int(self._release(keys=[self.lease_key(job_id)], args=[int(token)])))

    def check(self, job_id: str, token: int) -> bool:
        """True while `token` is the current lease; call right before committing a checkpoint."""
        value = self.redis.get(self.lease_key(job_id))
        if value is None:
            return False
        value = value.decode() if isinstance(value, bytes) else value
        return value.partition(":")[0] == str(int(token))

    def holder(self, job_id: str) -> str | None:
        value = self.redis.get(self.lease_key(job_id))
        if value is None:
            return None
        value = value.decode() if isinstance(value, bytes) else value
        return value.partition(":")[2]


def _ms(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError(f"lease ttl must be positive seconds, got {seconds}")
    return max(1, int(seconds * 1000))
