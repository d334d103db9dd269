"""Rate limits, exercised for real: per user with a token, else per client IP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import PASSWORD, assert_error, client_for, make_user, unique_name


def _assert_429(response: httpx.Response, limit: int) -> None:
    assert_error(response, 429)
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-reset"]) > 0


async def test_login_sixth_attempt_in_a_minute_is_429(client: httpx.AsyncClient) -> None:
    body = {"username": unique_name(), "password": "wrong-password"}
    for attempt in range(5):
        response = await client.post("/auth/login", json=body)
        assert response.status_code == 401
        assert response.headers["x-ratelimit-remaining"] == str(4 - attempt)
    _assert_429(await client.post("/auth/login", json=body), 5)


async def test_oauth2_token_endpoint_shares_the_login_budget(client: httpx.AsyncClient) -> None:
    body = {"username": unique_name(), "password": "wrong-password"}
    for _ in range(3):
        assert (await client.post("/auth/login", json=body)).status_code == 401
    for _ in range(2):
        assert (await client.post("/auth/token", data=body)).status_code == 401
    _assert_429(await client.post("/auth/token", data=body), 5)


async def test_register_eleventh_in_an_hour_is_429(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        name = unique_name()
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        assert (await client.post("/auth/register", json=body)).status_code == 201
    name = unique_name()
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    _assert_429(await client.post("/auth/register", json=body), 10)


async def test_anonymous_limits_are_per_client_ip(client: httpx.AsyncClient, app: Any) -> None:
    body = {"username": unique_name(), "password": "wrong-password"}
    for _ in range(5):
        await client.post("/auth/login", json=body)
    assert (await client.post("/auth/login", json=body)).status_code == 429
    async with client_for(app) as other_ip:
        assert (await other_ip.post("/auth/login", json=body)).status_code == 401


async def test_create_task_limit_is_per_user(app_factory: Callable[..., Any]) -> None:
    async with app_factory(rate_limit_create_task="3/minute") as app, client_for(app) as client:
        alice, bob = await make_user(client), await make_user(client)
        for _ in range(3):
            ok = await client.post("/tasks", json={"title": "t"}, headers=alice.headers)
            assert ok.status_code == 201
        _assert_429(await client.post("/tasks", json={"title": "t"}, headers=alice.headers), 3)
        # Same IP, another user: a budget of its own.
        bob_task = await client.post("/tasks", json={"title": "t"}, headers=bob.headers)
        assert bob_task.status_code == 201
        listed = await client.get("/tasks", headers=alice.headers)
        assert len(listed.json()) == 3  # the refused create did not run


async def test_default_limit_applies_to_every_other_route(app_factory: Callable[..., Any]) -> None:
    # The original declared 1000/hour and never applied it.
    async with app_factory(rate_limit_default="3/minute") as app, client_for(app) as client:
        user = await make_user(client)
        for remaining in (2, 1, 0):
            response = await client.get("/tasks", headers=user.headers)
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit"] == "3"
            assert response.headers["x-ratelimit-remaining"] == str(remaining)
        _assert_429(await client.get("/tasks", headers=user.headers), 3)
        # Limits are per route: stats still has its own budget; health is never limited.
        assert (await client.get("/tasks/stats", headers=user.headers)).status_code == 200
        for _ in range(5):
            assert (await client.get("/health")).status_code == 200


async def test_a_forged_token_is_limited_by_ip_not_by_the_claimed_user(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory(rate_limit_default="2/minute") as app, client_for(app) as client:
        for n in range(2):
            forged = {"Authorization": f"Bearer forged.token.{n}"}
            assert (await client.get("/tasks", headers=forged)).status_code == 401
        response = await client.get("/tasks", headers={"Authorization": "Bearer forged.x.y"})
        _assert_429(response, 2)


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    app_factory: Callable[..., Any],
) -> None:
    body = {"username": unique_name(), "password": "wrong-password"}
    async with app_factory() as app, client_for(app) as client:
        # Rotating X-Forwarded-For from an untrusted peer does not buy fresh budgets.
        for n in range(5):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert (await client.post("/auth/login", json=body, headers=spoofed)).status_code == 401
        spoofed = {"X-Forwarded-For": "203.0.113.99"}
        assert (await client.post("/auth/login", json=body, headers=spoofed)).status_code == 429
    async with app_factory(trusted_proxies=["10.0.0.0/8"]) as app, client_for(app) as proxy:
        # Behind a trusted proxy each real client has its own budget.
        for n in range(6):
            hop = {"X-Forwarded-For": f"198.51.100.{n}"}
            assert (await proxy.post("/auth/login", json=body, headers=hop)).status_code == 401


async def test_rate_limiting_can_be_switched_off(app_factory: Callable[..., Any]) -> None:
    async with app_factory(rate_limit_enabled=False) as app, client_for(app) as client:
        body = {"username": unique_name(), "password": "wrong-password"}
        for _ in range(8):
            response = await client.post("/auth/login", json=body)
            assert response.status_code == 401
            assert "x-ratelimit-limit" not in response.headers
