"""A real PostgreSQL stopped, refusing, shutting down and restarted under load: every answer
is the expected one or a 503 with `Retry-After` and the standard body, never a 500; the app
recovers by itself and nothing is half-written.

The test builds and owns its cluster (tests/pg_cluster.py), so it runs with the SQLite suite
too, and is skipped only where the PostgreSQL server binaries are missing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import User, client_for, make_task, make_user, migrate
from tests.pg_cluster import Cluster, throwaway_cluster, unavailable_reason

_WHY_NOT = unavailable_reason()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")

WORKERS = 6
# What each operation may answer when the database serves; 503 is allowed in outage phases.
EXPECTED = {
    "list": {200},
    "get": {200},
    "create": {201},
    "create-idempotent": {201},
    "patch": {200},
    "bulk": {200, 409},  # 409: a deadlock or serialization clash between bulks
    "health": {200},
}


@dataclass
class Load:
    client: httpx.AsyncClient
    user: User
    bulk_ids: list[int]
    patch_id: int
    phase: str = "warm-up"
    answers: list[tuple[str, str, httpx.Response]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    created: dict[int, str] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, operation: str, n: int) -> httpx.Response:
        headers = self.user.headers
        if operation == "list":
            return await self.client.get("/tasks", headers=headers)
        if operation == "get":
            return await self.client.get(f"/tasks/{self.patch_id}", headers=headers)
        if operation in ("create", "create-idempotent"):
            if operation == "create-idempotent":
                headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
            body = {"title": f"load-{n}"}
            response = await self.client.post("/tasks", json=body, headers=headers)
            if response.status_code == 201:
                self.created[response.json()["id"]] = body["title"]
            return response
        if operation == "patch":
            body = {"title": f"patched-{n}"}
            return await self.client.patch(f"/tasks/{self.patch_id}", json=body, headers=headers)
        if operation == "bulk":
            bulk = {"task_ids": self.bulk_ids, "updates": {"title": f"bulk-{n}"}}
            return await self.client.patch("/tasks/bulk", json=bulk, headers=headers)
        return await self.client.get("/health")

    async def worker(self, offset: int, counter: itertools.count[int]) -> None:
        operations = list(EXPECTED)
        while not self.stop.is_set():
            n = next(counter)
            operation = operations[(n + offset) % len(operations)]
            try:
                response = await self.call(operation, n)
            except Exception as exc:  # an exception through the ASGI transport: a 500 to a client
                self.errors.append(f"{self.phase} {operation}: {exc!r}")
            else:
                self.answers.append((self.phase, operation, response))
            await asyncio.sleep(0.005)  # refusals are instant: keep two cores usable

    def in_phase(self, phase: str) -> list[tuple[str, httpx.Response]]:
        return [(op, r) for p, op, r in self.answers if p == phase]


def _bad_answers(load: Load, *, allow_503: bool, phases: set[str]) -> list[str]:
    bad = []
    for phase, operation, response in load.answers:
        if phase not in phases:
            continue
        status = response.status_code
        if status in EXPECTED[operation]:
            continue
        if status == 503 and allow_503 and _is_standard_503(operation, response):
            continue
        bad.append(f"{phase} {operation} {status} {response.text[:200]}")
    return bad


def _is_standard_503(operation: str, response: httpx.Response) -> bool:
    body = response.json()
    if operation == "health":  # /health answers its own report, with 503 when not ready
        return bool(body.get("database") == "unavailable")
    return (
        body.get("error") == "Service Unavailable"
        and isinstance(body.get("message"), str)
        and response.headers.get("retry-after", "").isdigit()
        and response.headers.get("cache-control") == "no-store"
        and "Traceback" not in response.text
    )


async def _until_serving(client: httpx.AsyncClient, user: User, *, timeout: float = 20) -> None:
    """Wait for the app to answer again: ten list requests in a row with 200."""
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 10:
        assert time.monotonic() < deadline, "the app did not recover after the restart"
        response = await client.get("/tasks", headers=user.headers)
        in_a_row = in_a_row + 1 if response.status_code == 200 else 0
        await asyncio.sleep(0.02)


async def _shutting_down_window(cluster: Cluster, load: Load, seconds: float) -> None:
    """Smart shutdown waits for the sessions still open and refuses new ones with 57P03 ("the
    database system is shutting down"); the app's own sessions are ended (57P01), so it must
    reconnect into that refusal."""
    held = await asyncpg.connect(cluster.url)
    try:
        await asyncio.to_thread(cluster.stop, "smart", wait=False)
        await asyncio.sleep(0.3)
        with pytest.raises(asyncpg.CannotConnectNowError):
            await asyncpg.connect(cluster.url)  # the window is open
        await held.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'task-manager-api'"
        )
        load.phase = "shutting-down"
        await asyncio.sleep(seconds)
    finally:
        await held.close()
    await asyncio.to_thread(cluster.stop, "fast")


async def _outages(cluster: Any, client: httpx.AsyncClient, user: Any, load: Load) -> None:
    """Drive the cluster through every kind of outage while the load runs."""
    await asyncio.sleep(1.0)
    # 1. Shutting down (57P03) after the app's sessions were terminated (57P01).
    await _shutting_down_window(cluster, load, seconds=1.5)
    # 2. Down: connections refused. Then started without waiting: requests meet the server
    #    while it starts up.
    load.phase = "stopped-fast"
    await asyncio.sleep(1.5)
    load.phase = "starting"
    await asyncio.to_thread(cluster.start, wait=False)
    await _until_serving(client, user)
    load.phase = "served-again"
    await asyncio.sleep(1.0)
    # 3. Stopped fast under load (sessions ended mid-statement: 57P01, resets).
    load.phase = "stopping-fast"
    await asyncio.to_thread(cluster.stop, "fast")
    await asyncio.sleep(1.0)
    await asyncio.to_thread(cluster.start, wait=False)
    await _until_serving(client, user)
    # 4. Killed (immediate: no shutdown checkpoint), then crash recovery on start.
    load.phase = "killed"
    await asyncio.to_thread(cluster.stop, "immediate")
    await asyncio.sleep(1.0)
    await asyncio.to_thread(cluster.start, wait=False)
    await _until_serving(client, user)
    load.phase = "recovered"
    await asyncio.sleep(1.5)


def _assert_answers(load: Load) -> None:
    outage = {"shutting-down", "stopped-fast", "starting", "stopping-fast", "killed"}
    assert load.errors == [], load.errors[:5]
    assert _bad_answers(load, allow_503=True, phases=outage | {"warm-up"}) == []
    # Once served again, the pool has recovered: every answer is the expected one.
    assert _bad_answers(load, allow_503=False, phases={"served-again", "recovered"}) == []
    statuses = Counter(r.status_code for _, _, r in load.answers)
    assert statuses[500] == 0, statuses
    for phase in ("shutting-down", "stopped-fast", "killed"):
        assert any(r.status_code == 503 for _, r in load.in_phase(phase)), phase
    assert any(r.status_code == 201 for _, r in load.in_phase("recovered"))


async def _assert_nothing_half_written(
    client: httpx.AsyncClient, user: Any, load: Load, bulk_ids: list[int]
) -> None:
    # Every task answered 201 exists with its title, and each bulk update was all or nothing
    # (the three tasks carry one bulk's title).
    for task_id, title in load.created.items():
        fetched = await client.get(f"/tasks/{task_id}", headers=user.headers)
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["title"] == title
    titles = {
        (await client.get(f"/tasks/{i}", headers=user.headers)).json()["title"] for i in bulk_ids
    }
    assert len(titles) == 1, titles


async def test_postgres_stopped_and_restarted_under_load_gives_503_never_500_then_recovers(
    app_factory: Callable[..., Any],
) -> None:
    with throwaway_cluster() as cluster:
        await asyncio.to_thread(migrate, cluster.url)
        settings = {
            "database_url": cluster.url,
            "db_connect_timeout": 1,
            "db_pool_timeout": 2,
            "db_pool_size": 4,
            "db_max_overflow": 0,
            "rate_limit_enabled": False,
        }
        async with app_factory(**settings) as app, client_for(app) as client:
            user = await make_user(client)
            bulk_ids = [(await make_task(client, user, title="bulk-0"))["id"] for _ in range(3)]
            patch_id = (await make_task(client, user, title="patched-0"))["id"]
            load = Load(client, user, bulk_ids, patch_id)
            counter = itertools.count(1)
            workers = [asyncio.create_task(load.worker(i, counter)) for i in range(WORKERS)]
            try:
                await _outages(cluster, client, user, load)
            finally:
                load.stop.set()
                await asyncio.gather(*workers)
            _assert_answers(load)
            await _assert_nothing_half_written(client, user, load, bulk_ids)
