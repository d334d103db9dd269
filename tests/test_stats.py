"""GET /tasks/stats: counted in SQL, per user, cached, invalidated by every write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import User, make_task, make_user

YESTERDAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


async def _stats(client: httpx.AsyncClient, user: User) -> tuple[dict[str, Any], str]:
    response = await client.get("/tasks/stats", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["x-cache"]


async def test_stats_for_new_user_are_zero_with_every_priority_key(
    client: httpx.AsyncClient,
) -> None:
    stats, _ = await _stats(client, await make_user(client))
    assert stats == {
        "total": 0,
        "completed": 0,
        "incomplete": 0,
        "completion_rate": 0.0,
        "by_priority": {"low": 0, "medium": 0, "high": 0},
        "by_tag": {},
        "overdue": 0,
    }


async def test_stats_count_only_the_callers_tasks(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    await make_task(client, alice, priority="high", completed=True, tags=["work", "x"])
    await make_task(client, alice, priority="high", tags=["work"])
    await make_task(client, alice, priority="low", due_date=YESTERDAY)
    await make_task(client, alice, due_date=YESTERDAY, completed=True)
    await make_task(client, bob, priority="low", tags=["work"], due_date=YESTERDAY)
    stats, _ = await _stats(client, alice)
    assert stats == {
        "total": 4,
        "completed": 2,
        "incomplete": 2,
        "completion_rate": 0.5,
        "by_priority": {"low": 1, "medium": 1, "high": 2},
        "by_tag": {"work": 2, "x": 1},
        "overdue": 1,
    }


async def test_stats_second_read_is_a_cache_hit(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    await make_task(client, user)
    first, first_state = await _stats(client, user)
    second, second_state = await _stats(client, user)
    assert (first_state, second_state) == ("MISS", "HIT")
    assert first == second


async def _create(client: httpx.AsyncClient, user: User, task: dict[str, Any]) -> None:
    await make_task(client, user, title="another", tags=["new"])


async def _update(client: httpx.AsyncClient, user: User, task: dict[str, Any]) -> None:
    await client.patch(f"/tasks/{task['id']}", json={"completed": True}, headers=user.headers)


async def _delete(client: httpx.AsyncClient, user: User, task: dict[str, Any]) -> None:
    await client.delete(f"/tasks/{task['id']}", headers=user.headers)


async def _bulk(client: httpx.AsyncClient, user: User, task: dict[str, Any]) -> None:
    await client.patch(
        "/tasks/bulk",
        json={"task_ids": [task["id"]], "updates": {"priority": "low"}},
        headers=user.headers,
    )


async def _add_tag(client: httpx.AsyncClient, user: User, task: dict[str, Any]) -> None:
    await client.post(f"/tasks/{task['id']}/tags", json=["added"], headers=user.headers)


async def _remove_tag(client: httpx.AsyncClient, user: User, task: dict[str, Any]) -> None:
    await client.delete(f"/tasks/{task['id']}/tags/old", headers=user.headers)


Write = Callable[[httpx.AsyncClient, User, dict[str, Any]], Awaitable[None]]


@pytest.mark.parametrize(
    ("write", "check"),
    [
        (_create, lambda s: s["total"] == 2 and s["by_tag"].get("new") == 1),
        (_update, lambda s: s["completed"] == 1 and s["completion_rate"] == 1.0),
        (_delete, lambda s: s["total"] == 0 and s["by_tag"] == {}),
        (_bulk, lambda s: s["by_priority"]["low"] == 1),
        (_add_tag, lambda s: s["by_tag"] == {"old": 1, "added": 1}),
        (_remove_tag, lambda s: s["by_tag"] == {}),
    ],
    ids=["create", "update", "delete", "bulk", "tag-add", "tag-remove"],
)
async def test_every_write_invalidates_cached_stats(
    client: httpx.AsyncClient, write: Write, check: Callable[[dict[str, Any]], bool]
) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["old"])
    await _stats(client, user)
    _, state = await _stats(client, user)
    assert state == "HIT"
    await write(client, user, task)
    stats, state = await _stats(client, user)
    assert state == "MISS"
    assert check(stats), stats


async def test_failed_write_keeps_cache_valid(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    await _stats(client, user)
    bad = await client.patch(f"/tasks/{task['id']}", json={"title": ""}, headers=user.headers)
    assert bad.status_code == 422
    _, state = await _stats(client, user)
    assert state == "HIT"
