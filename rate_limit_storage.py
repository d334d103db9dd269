"""Rate-limit counters for `limits`' asyncio strategies: Redis, failing over to the process.

Every call is awaited, so a slow or hung Redis never blocks the event loop; each call is bounded by
REDIS_TIMEOUT (socket timeouts, no retries). A failed call is counted in the process instead and
opens a circuit breaker, so for REDIS_RETRY_INTERVAL seconds no request waits on Redis at all:
limits still hold (per instance) during an outage, and no storage error ever fails a request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limits.aio.storage import RedisStorage, Storage
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from circuit_breaker import CircuitBreaker
from redis_config import redis_timeouts
from settings import Settings

# Expired counters are swept when the table has grown this much since the last sweep.
_SWEEP_GROWTH = 10_000


class LocalCounters:
    """Fixed-window counters in a dict. No awaits inside a method, so each is atomic on the loop.

    limits' own asyncio MemoryStorage starts a task that scans every key on each hit; this one
    expires a key when it is next read and sweeps the table only as it grows (amortised O(1)).
    """

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, float]] = {}
        self._sweep_at = _SWEEP_GROWTH

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._counters.get(key)
        if entry is not None and entry[1] <= now:
            del self._counters[key]
            return None
        return entry

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        entry = self._live(key, now)
        count, expires = (amount, now + expiry) if entry is None else (entry[0] + amount, entry[1])
        self._counters[key] = (count, expires)
        if len(self._counters) >= self._sweep_at:
            self._sweep(now)
        return count

    async def get(self, key: str) -> int:
        entry = self._live(key, time.time())
        return 0 if entry is None else entry[0]

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        entry = self._live(key, now)
        return now if entry is None else entry[1]

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    async def reset(self) -> int | None:
        count = len(self._counters)
        self._counters.clear()
        return count

    def _sweep(self, now: float) -> None:
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._sweep_at = len(self._counters) + _SWEEP_GROWTH


class FailoverStorage(Storage):
    """Redis counters with a per-call fallback to in-process counters."""

    STORAGE_SCHEME = None

    def __init__(
        self,
        primary: Storage | None,
        *,
        retry_interval: float,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self._primary = primary
        self._fallback = LocalCounters()
        self._breaker = CircuitBreaker("redis rate-limit storage", retry_interval)
        self._close = close

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return Exception

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._primary is not None and self._breaker.allows():
            try:
                result = await getattr(self._primary, method)(*args, **kwargs)
            except Exception as exc:  # any storage failure means: count locally for now
                self._breaker.failed(exc)
            else:
                self._breaker.succeeded()
                return result
        return await getattr(self._fallback, method)(*args, **kwargs)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(await self._call("incr", key, expiry, amount=amount))

    async def get(self, key: str) -> int:
        return int(await self._call("get", key))

    async def get_expiry(self, key: str) -> float:
        # Whole seconds, so X-RateLimit-Reset is an integer epoch as clients expect.
        return math.ceil(float(await self._call("get_expiry", key)))

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        return await self._fallback.reset()

    async def clear(self, key: str) -> None:
        await self._call("clear", key)

    async def close(self) -> None:
        if self._close is not None:
            await self._close()


def build_storage(settings: Settings) -> FailoverStorage:
    """Counters in Redis when REDIS_URL is set (through redis.asyncio), else in the process.
    Building the pool does no I/O: connections are opened on first use."""
    if not settings.redis_url:
        return FailoverStorage(None, retry_interval=settings.redis_retry_interval)
    pool = ConnectionPool.from_url(
        settings.redis_url, retry=Retry(NoBackoff(), 0), **redis_timeouts(settings)
    )
    primary = RedisStorage(
        settings.redis_url,
        implementation="redispy",
        key_prefix=f"{settings.redis_key_prefix}limits",
        connection_pool=pool,  # type: ignore[arg-type]  # limits types options as scalars
    )
    return FailoverStorage(primary, retry_interval=settings.redis_retry_interval, close=pool.aclose)
