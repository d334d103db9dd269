"""Redis refused, hung, or cut mid-run: requests still succeed, stats stay right, limits hold."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import User, client_for, fresh_ip, make_task, make_user, unique_name
from tests.network import BlackHole, TcpProxy

REFUSED_REDIS = "redis://127.0.0.1:9/0"  # nothing listens on port 9


async def _stats(client: httpx.AsyncClient, user: User) -> tuple[int, str]:
    response = await client.get("/tasks/stats", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()["total"], response.headers["x-cache"]


@contextmanager
def _redis_through_proxy() -> Iterator[tuple[TcpProxy, str]]:
    """The test Redis behind a TCP proxy the test can cut and restore, and the URL through it."""
    real = urlsplit(os.environ["TEST_REDIS_URL"])
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 6379)
    proxy.start()
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}{real.path}"
    finally:
        proxy.stop()


async def _login_until_limited(app: Any) -> list[int]:
    """Six bad logins from a fresh client IP: the sixth must be refused."""
    body = {"username": unique_name(), "password": "wrong-password"}
    async with client_for(app) as client:
        return [(await client.post("/auth/login", json=body)).status_code for _ in range(6)]


async def _assert_degraded_but_serving(app: Any, client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    await make_task(client, user)
    assert await _stats(client, user) == (1, "MISS")
    await make_task(client, user)
    assert (await _stats(client, user))[0] == 2
    assert await _login_until_limited(app) == [401] * 5 + [429]
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["cache"] == "unavailable"
    assert health.json()["status"] == "degraded"


async def test_redis_refused_at_start_up_degrades_without_errors(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory(redis_url=REFUSED_REDIS) as app, client_for(app) as client:
        await _assert_degraded_but_serving(app, client)


async def test_redis_hung_degrades_within_bounded_time(app_factory: Callable[..., Any]) -> None:
    with BlackHole() as hole:
        url = f"redis://127.0.0.1:{hole.port}/0"
        async with app_factory(redis_url=url, redis_timeout=0.2) as app, client_for(app) as client:
            # A hung cache must not hang requests: the short timeout bounds each one.
            await asyncio.wait_for(_assert_degraded_but_serving(app, client), timeout=30)


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs a real Redis")
async def test_redis_cut_mid_run_then_back_resumes_caching(
    app_factory: Callable[..., Any],
) -> None:
    with _redis_through_proxy() as (proxy, url):
        # No in-process copies: every hit below is Redis's (the near cache has its own test).
        app_cm = app_factory(redis_url=url, redis_retry_interval=0, stats_near_cache_entries=0)
        async with app_cm as app, client_for(app) as client:
            user = await make_user(client)
            await make_task(client, user)
            assert await _stats(client, user) == (1, "MISS")
            assert await _stats(client, user) == (1, "HIT")  # served by Redis

            proxy.stop()  # Redis disappears mid-run
            await make_task(client, user)
            assert await _stats(client, user) == (2, "MISS")
            assert await _login_until_limited(app) == [401] * 5 + [429]

            proxy.start()  # and comes back on the same address
            assert await _stats(client, user) == (2, "MISS")
            assert await _stats(client, user) == (2, "HIT")
            health = await client.get("/health")
            assert health.json()["cache"] == "ok"


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs a real Redis")
async def test_near_cache_shares_through_redis_and_is_never_stale(
    app_factory: Callable[..., Any],
) -> None:
    # Two instances on one Redis and one database; each keeps its own copy of stats entries.
    with _redis_through_proxy() as (proxy, url):
        async with (
            app_factory(redis_url=url, redis_retry_interval=0) as first,
            app_factory(redis_url=url, redis_retry_interval=0) as second,
            client_for(first) as one,
            client_for(second) as two,
        ):
            user = await make_user(one)
            await make_task(one, user)
            assert await _stats(one, user) == (1, "MISS")
            # The second instance never computed it: its hit can only have come from Redis.
            assert await _stats(two, user) == (1, "HIT")

            proxy.stop()  # Redis unreachable: both still answer repeat reads from memory
            assert await _stats(one, user) == (1, "HIT")
            assert await _stats(two, user) == (1, "HIT")

            await make_task(two, user)  # a write through the other instance...
            # ...moves the user's data version, so the first instance's copy is never served.
            assert await _stats(one, user) == (2, "MISS")
            assert await _stats(two, user) == (2, "MISS")
            assert await _stats(one, user) == (2, "HIT")


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs a real Redis")
async def test_near_cache_off_asks_redis_every_time(app_factory: Callable[..., Any]) -> None:
    with _redis_through_proxy() as (proxy, url):
        overrides = {"redis_url": url, "redis_retry_interval": 0, "stats_near_cache_entries": 0}
        async with app_factory(**overrides) as app, client_for(app) as client:
            user = await make_user(client)
            await make_task(client, user)
            assert await _stats(client, user) == (1, "MISS")
            assert await _stats(client, user) == (1, "HIT")
            proxy.stop()
            assert await _stats(client, user) == (1, "MISS")  # no copy: Redis was the only one


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs a real Redis")
async def test_rate_limit_counters_live_in_redis(app_factory: Callable[..., Any]) -> None:
    # Two apps (think: two instances) on one Redis share one login budget per client IP.
    ip, body = fresh_ip(), {"username": unique_name(), "password": "wrong-password"}
    async with app_factory() as first, client_for(first, ip) as client:
        for _ in range(5):
            assert (await client.post("/auth/login", json=body)).status_code == 401
    async with app_factory() as second, client_for(second, ip) as client:
        assert (await client.post("/auth/login", json=body)).status_code == 429
