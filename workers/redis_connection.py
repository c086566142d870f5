"""Redis clients from ANIMEGAN_REDIS_URL: redis://, rediss:// (TLS), unix:// and sentinel:// (the master that
the Sentinels name now, looked up again on every reconnect, so a failover needs no restart)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import redis
import redis.asyncio
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

if TYPE_CHECKING:
    from workers.settings import ServiceSettings


def sentinel_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, int]:
    """(host, port) of each Sentinel, the password and the database of a kombu-style sentinel:// URL:
    sentinel://[:password@]host:port[/db][;sentinel://host2:port2 ...]."""
    nodes, password, db = [], None, 0
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        nodes.append((parsed.hostname or "localhost", parsed.port or 26379))
        password = password or (unquote(parsed.password) if parsed.password else None)
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    return nodes, password, db


# Any: redis.Redis's own keyword options (timeouts, decode_responses), passed through.
def connect(settings: ServiceSettings, **kwargs: Any) -> redis.Redis:
    """A client for settings.redis_url (kwargs: decode_responses, socket timeouts, ...)."""
    url = settings.redis_url
    if not url.startswith("sentinel:"):
        return redis.Redis.from_url(url, **kwargs)
    nodes, password, db = sentinel_nodes(url)
    timeouts = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
    # The Sentinels and the master share the password (the usual setup; kombu assumes the same).
    sentinel = Sentinel(
        nodes, sentinel_kwargs={"password": password, **timeouts}, password=password, **timeouts
    )
    return sentinel.master_for(settings.redis_sentinel_master, db=db, **kwargs)


def connect_async(settings: Any, **kwargs: Any) -> redis.asyncio.Redis:
    """A redis.asyncio client for settings.redis_url, with the same URL forms as connect()."""
    url = settings.redis_url
    if not url.startswith("sentinel:"):
        return redis.asyncio.Redis.from_url(url, **kwargs)
    nodes, password, db = sentinel_nodes(url)
    timeouts = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = AsyncSentinel(
        nodes, sentinel_kwargs={"password": password, **timeouts}, password=password, **timeouts
    )
    return sentinel.master_for(settings.redis_sentinel_master, db=db, **kwargs)
