"""The request pipeline: one token check per request, idempotency inside the app's error
handling, and rate-limit counters that never block the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.exc import OperationalError

import auth
from services import idempotency as idempotency_service
from services import tasks as task_service
from tests.conftest import assert_error, client_for, make_user
from tests.network import BlackHole

REDIS_TIMEOUT = 0.2
HUNG_TIMEOUT = 1.0  # long enough that one blocked call dwarfs any scheduling jitter


async def _largest_loop_lag(done: asyncio.Event) -> float:
    """How late a 10 ms timer fires, at worst, until `done`: the event loop's responsiveness."""
    worst = 0.0
    while not done.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - started - 0.01)
    return worst


async def test_hung_redis_never_blocks_the_event_loop(app_factory: Callable[..., Any]) -> None:
    with BlackHole() as hole:
        settings = {
            "redis_url": f"redis://127.0.0.1:{hole.port}/0",
            "redis_timeout": HUNG_TIMEOUT,
            "redis_retry_interval": 0,  # no breaker: every counter call waits on the hung Redis
        }
        async with app_factory(**settings) as app, client_for(app) as client:
            user = await make_user(client)
            done = asyncio.Event()
            lag = asyncio.create_task(_largest_loop_lag(done))
            started = time.perf_counter()
            responses = await asyncio.gather(
                *(client.get("/tasks", headers=user.headers) for _ in range(5))
            )
            elapsed = time.perf_counter() - started
            done.set()
            assert [r.status_code for r in responses] == [200] * 5
            # The counter calls wait concurrently: the loop stays free for everything else
            # (a blocking client would stall it HUNG_TIMEOUT per call, 3 calls per request).
            # The margin is wide so a loaded CI machine's scheduling jitter never decides it.
            assert await lag < HUNG_TIMEOUT / 2
            assert elapsed < 8 * HUNG_TIMEOUT  # blocking calls would take 5 x 3 x the timeout


async def test_hung_redis_costs_its_timeout_once_then_counts_locally(
    app_factory: Callable[..., Any],
) -> None:
    with BlackHole() as hole:
        settings = {"redis_url": f"redis://127.0.0.1:{hole.port}/0", "redis_timeout": REDIS_TIMEOUT}
        async with app_factory(**settings) as app, client_for(app) as client:
            user = await make_user(client)  # pays the timeout once, then the breaker opens
            tried = hole.connections
            assert tried >= 1
            responses = [await client.get("/tasks", headers=user.headers) for _ in range(10)]
            assert [r.status_code for r in responses] == [200] * 10
            assert responses[0].headers["x-ratelimit-limit"] == "1000"  # counted in the process
            assert hole.connections == tried  # nobody waited on Redis again


async def test_database_error_while_reserving_a_key_is_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(client)
    headers = {**user.headers, "Idempotency-Key": "db-down"}

    async def database_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("DELETE FROM idempotency_keys", {}, ConnectionError("down"))

    with monkeypatch.context() as patch:
        patch.setattr(idempotency_service, "reserve", database_down)
        response = await client.post("/tasks", json={"title": "t"}, headers=headers)
    assert_error(response, 503, error="Service Unavailable")
    assert response.headers["retry-after"] == "5"
    retry = await client.post("/tasks", json={"title": "t"}, headers=headers)
    assert retry.status_code == 201


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (OperationalError("INSERT INTO tasks", {}, ConnectionError("down")), 503),
        (RuntimeError("a bug"), 500),
    ],
)
async def test_failed_keyed_request_can_be_retried_at_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, failure: Exception, status: int
) -> None:
    user = await make_user(client)
    headers = {**user.headers, "Idempotency-Key": f"fails-{status}"}

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(task_service, "create_task", failing)
        assert_error(await client.post("/tasks", json={"title": "t"}, headers=headers), status)
    retry = await client.post("/tasks", json={"title": "t"}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("GET", "/tasks", None, None),
        ("POST", "/tasks", {"title": "t"}, "once"),  # idempotency, both limits, the route
    ],
)
async def test_token_is_verified_once_per_request(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: dict[str, str] | None,
    key: str | None,
) -> None:
    user = await make_user(client)
    verified: list[str] = []
    verify = auth.token_principal

    def counting(token: str, *, secret: str) -> auth.Principal:
        verified.append(token)
        return verify(token, secret=secret)

    monkeypatch.setattr(auth, "token_principal", counting)
    for n in (1, 2):  # once per request, however many parts of the pipeline ask who is calling
        headers = {**user.headers, **({"Idempotency-Key": f"{key}-{n}"} if key else {})}
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code < 300, response.text
        assert "x-ratelimit-limit" in response.headers  # rate limiting was on
        assert len(verified) == n


async def test_a_verified_token_is_not_decoded_again_until_it_expires(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(client)
    decoded: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    for _ in range(3):
        assert (await client.get("/tasks", headers=user.headers)).status_code == 200
    assert len(decoded) <= 1  # the login's token may already be known to this process
    forged = user.headers["Authorization"][:-2] + (
        "AA" if not user.headers["Authorization"].endswith("AA") else "BB"
    )
    assert (await client.get("/tasks", headers={"Authorization": forged})).status_code == 401
