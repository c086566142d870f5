"""API keys: bearer tokens whose sha256 is stored in Redis next to the tenant it belongs to.

The token itself is shown once, at creation (`animegan keys create --tenant NAME`); Redis never holds it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import redis

from workers import redis_keys

TOKEN_PREFIX = "agk_"
# Tenants name storage prefixes and Redis keys, so they are kept to a safe alphabet.
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class InvalidTenant(ValueError):
    """A tenant name outside TENANT_RE."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise InvalidTenant(
            f"tenant name {tenant!r} is not valid: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return tenant


def create_api_key(client: redis.Redis, tenant: str) -> str:
    """Mint a new token for `tenant` and store its hash; return the token (the only time it is visible)."""
    validate_tenant(tenant)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = token_hash(token)
    pipe = client.pipeline()
    pipe.hset(redis_keys.api_key(digest), mapping={"tenant": tenant, "created_at": f"{time.time():.3f}"})
    pipe.sadd(redis_keys.tenant_api_keys(tenant), digest)
    pipe.execute()
    return token


def tenant_for_token(client: redis.Redis, token: str) -> str | None:
    """The tenant a bearer token belongs to, or None for an unknown or revoked token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    tenant = client.hget(redis_keys.api_key(token_hash(token)), "tenant")
    if tenant is None:
        return None
    return tenant.decode() if isinstance(tenant, bytes) else tenant


def revoke_tenant_keys(client: redis.Redis, tenant: str) -> int:
    """Remove every key of `tenant`; return how many there were."""
    digests = client.smembers(redis_keys.tenant_api_keys(tenant))
    pipe = client.pipeline()
    for digest in digests:
        d = digest.decode() if isinstance(digest, bytes) else digest
        pipe.delete(redis_keys.api_key(d))
    pipe.delete(redis_keys.tenant_api_keys(tenant))
    pipe.execute()
    return len(digests)
