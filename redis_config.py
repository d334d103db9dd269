"""The stats cache: Redis when REDIS_URL is set, otherwise an in-process TTL cache.

With Redis, a small in-process tier sits in front of it (`NearCache`): a stats value names the
data version it was counted at, and services.stats serves it only when that is still the
user's version, so a copy kept in the process can be old but is never served stale; a repeat
read then costs no Redis round trip.

A cache is an optimisation, so no cache failure ever fails a request: a Redis error is logged
once per outage and reads as a miss, and Redis is left alone for REDIS_RETRY_INTERVAL seconds
so a hung server does not add its timeout to every request.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Literal, Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from circuit_breaker import CircuitBreaker
from settings import Settings

logger = logging.getLogger(__name__)

CacheState = Literal["ok", "unavailable", "memory"]


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: int) -> None: ...
    async def state(self) -> CacheState: ...
    async def close(self) -> None: ...


class MemoryCache:
    """A bounded TTL cache for one process (the embedded default)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= time.monotonic():
            del self._entries[key]
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def state(self) -> CacheState:
        return "memory"

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    def __init__(self, client: Redis, *, prefix: str, retry_interval: float) -> None:
        self._client = client
        self._prefix = prefix
        self._breaker = CircuitBreaker("redis cache", retry_interval)

    async def get(self, key: str) -> bytes | None:
        if not self._breaker.allows():
            return None
        try:
            value = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._breaker.failed(exc)
            return None
        self._breaker.succeeded()
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        if not self._breaker.allows():
            return
        try:
            await self._client.set(self._prefix + key, value, ex=ttl)
        except (RedisError, OSError) as exc:
            self._breaker.failed(exc)
        else:
            self._breaker.succeeded()

    async def state(self) -> CacheState:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            self._breaker.failed(exc)
            return "unavailable"
        self._breaker.succeeded()
        return "ok"

    async def close(self) -> None:
        await self._client.aclose()


class NearCache:
    """An in-process copy of a shared cache's values, for values that say themselves whether
    they are still current (services.stats: the data version they were counted at).

    Reads try the process first, then the shared cache (keeping what it returns); writes go to
    both. Entries keep the TTL they were written with (a value read from the shared cache is
    kept for `ttl_on_read` at most), so the process never serves a key past its time.
    """

    def __init__(self, shared: Cache, *, max_entries: int, ttl_on_read: int) -> None:
        self._shared = shared
        self._local = MemoryCache(max_entries)
        self._ttl_on_read = ttl_on_read

    async def get(self, key: str) -> bytes | None:
        value = await self._local.get(key)
        if value is None:
            value = await self._shared.get(key)
            if value is not None:
                await self._local.set(key, value, self._ttl_on_read)
        return value

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self._local.set(key, value, ttl)
        await self._shared.set(key, value, ttl)

    async def state(self) -> CacheState:
        return await self._shared.state()

    async def close(self) -> None:
        await self._local.close()
        await self._shared.close()


def redis_timeouts(settings: Settings) -> dict[str, Any]:
    """Short timeouts and no retries: a slow Redis must cost little, and the breaker backs off."""
    return {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry_on_timeout": False,
    }


def build_cache(settings: Settings) -> Cache:
    if not settings.redis_url:
        return MemoryCache()
    client = Redis.from_url(
        settings.redis_url, retry=Retry(NoBackoff(), 0), **redis_timeouts(settings)
    )
    shared = RedisCache(
        client, prefix=settings.redis_key_prefix, retry_interval=settings.redis_retry_interval
    )
    if settings.stats_near_cache_entries == 0:
        return shared
    return NearCache(
        shared, max_entries=settings.stats_near_cache_entries, ttl_on_read=settings.stats_cache_ttl
    )
