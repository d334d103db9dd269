"""GET /tasks: filters, search, sorting and paging (with the original's bugs fixed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error, make_task, make_user

TODAY = datetime.now(UTC).date()
YESTERDAY = (TODAY - timedelta(days=1)).isoformat()
TOMORROW = (TODAY + timedelta(days=1)).isoformat()


async def _titles(client: httpx.AsyncClient, user: User, **params: Any) -> list[str]:
    response = await client.get("/tasks", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return [task["title"] for task in response.json()]


@pytest.fixture
async def user(client: httpx.AsyncClient) -> User:
    return await make_user(client)


async def test_filter_by_completed_and_priority(client: httpx.AsyncClient, user: User) -> None:
    await make_task(client, user, title="done-high", completed=True, priority="high")
    await make_task(client, user, title="open-high", priority="high")
    await make_task(client, user, title="open-low", priority="low")
    assert await _titles(client, user, completed="true") == ["done-high"]
    assert await _titles(client, user, completed="false") == ["open-high", "open-low"]
    assert await _titles(client, user, priority="high") == ["done-high", "open-high"]
    assert await _titles(client, user, priority="high", completed="false") == ["open-high"]


async def test_filter_by_tag_matches_exact_tag(client: httpx.AsyncClient, user: User) -> None:
    # The original answered ?tag= with a 500.
    await make_task(client, user, title="a", tags=["work", "home"])
    await make_task(client, user, title="b", tags=["workshop"])
    await make_task(client, user, title="c")
    assert await _titles(client, user, tag="work") == ["a"]
    assert await _titles(client, user, tag="home") == ["a"]
    assert await _titles(client, user, tag="nothing") == []


async def test_filter_by_tag_never_matches_other_users_tasks(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    await make_task(client, bob, title="bob's", tags=["shared"])
    assert await _titles(client, alice, tag="shared") == []


async def test_filter_overdue_true_and_false(client: httpx.AsyncClient, user: User) -> None:
    await make_task(client, user, title="late", due_date=YESTERDAY)
    await make_task(client, user, title="late-but-done", due_date=YESTERDAY, completed=True)
    await make_task(client, user, title="due-today", due_date=TODAY.isoformat())
    await make_task(client, user, title="future", due_date=TOMORROW)
    await make_task(client, user, title="no-date")
    assert await _titles(client, user, overdue="true") == ["late"]
    # The original ignored overdue=false.
    assert await _titles(client, user, overdue="false") == [
        "late-but-done", "due-today", "future", "no-date",
    ]  # fmt: skip


async def test_created_date_bounds_are_inclusive_days(
    client: httpx.AsyncClient, user: User
) -> None:
    await make_task(client, user, title="today")
    today = TODAY.isoformat()
    # The original's created_before excluded the very day given.
    assert await _titles(client, user, created_before=today) == ["today"]
    assert await _titles(client, user, created_after=today) == ["today"]
    assert await _titles(client, user, created_after=today, created_before=today) == ["today"]
    assert await _titles(client, user, created_before=YESTERDAY) == []
    assert await _titles(client, user, created_after=TOMORROW) == []


async def test_search_matches_title_or_description_case_insensitively(
    client: httpx.AsyncClient, user: User
) -> None:
    await make_task(client, user, title="Buy MILK")
    await make_task(client, user, title="other", description="milkshake recipe")
    await make_task(client, user, title="unrelated")
    assert await _titles(client, user, search="milk") == ["Buy MILK", "other"]


async def test_search_treats_wildcards_literally(client: httpx.AsyncClient, user: User) -> None:
    await make_task(client, user, title="100% done")
    await make_task(client, user, title="1000 done")
    await make_task(client, user, title="snake_case")
    await make_task(client, user, title="snakeXcase")
    await make_task(client, user, title="back\\slash")
    # Terms without three letters or digits in a row, which no trigram index can serve...
    assert await _titles(client, user, search="%") == ["100% done"]
    assert await _titles(client, user, search="0%") == ["100% done"]
    assert await _titles(client, user, search="e_c") == ["snake_case"]
    assert await _titles(client, user, search="\\") == ["back\\slash"]
    # ...and terms with them (ILIKE, which PostgreSQL's trigram indexes can serve).
    assert await _titles(client, user, search="100%") == ["100% done"]
    assert await _titles(client, user, search="SNAKE_case") == ["snake_case"]
    assert await _titles(client, user, search="ack\\sl") == ["back\\slash"]


async def test_sort_by_priority_orders_by_rank_not_alphabet(
    client: httpx.AsyncClient, user: User
) -> None:
    for title, priority in [("m1", "medium"), ("h1", "high"), ("l1", "low"), ("m2", "medium")]:
        await make_task(client, user, title=title, priority=priority)
    assert await _titles(client, user, sort_by="priority") == ["l1", "m1", "m2", "h1"]
    assert await _titles(client, user, sort_by="priority", sort_order="desc") == [
        "h1", "m2", "m1", "l1",
    ]  # fmt: skip


async def test_sort_by_due_date_puts_missing_dates_last(
    client: httpx.AsyncClient, user: User
) -> None:
    await make_task(client, user, title="none")
    await make_task(client, user, title="later", due_date="2031-01-01")
    await make_task(client, user, title="sooner", due_date="2030-01-01")
    assert await _titles(client, user, sort_by="due_date") == ["sooner", "later", "none"]
    assert await _titles(client, user, sort_by="due_date", sort_order="desc") == [
        "later", "sooner", "none",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "field", ["id", "title", "priority", "completed", "created_at", "due_date"]
)
async def test_every_sort_field_gives_a_deterministic_order(
    client: httpx.AsyncClient, user: User, field: str
) -> None:
    for _ in range(3):
        await make_task(client, user, title="same")
    first = await client.get("/tasks", params={"sort_by": field}, headers=user.headers)
    ids = [task["id"] for task in first.json()]
    assert ids == sorted(ids)  # equal keys fall back to id order


async def test_pagination_headers_and_pages(client: httpx.AsyncClient, user: User) -> None:
    for i in range(5):
        await make_task(client, user, title=f"t{i}")
    response = await client.get("/tasks", params={"skip": 2, "limit": 2}, headers=user.headers)
    assert [task["title"] for task in response.json()] == ["t2", "t3"]
    assert response.headers["x-total-count"] == "5"
    links = {
        part.split('rel="')[1].rstrip('"'): part.split(">")[0].lstrip("<")
        for part in response.headers["link"].split(", ")
    }
    assert set(links) == {"first", "last", "next", "prev"}
    assert "skip=4" in links["next"]
    assert "limit=2" in links["next"]
    assert "skip=0" in links["prev"]
    last = await client.get(links["last"], headers=user.headers)
    assert [task["title"] for task in last.json()] == ["t4"]
    assert 'rel="next"' not in last.headers["link"]


async def test_pagination_total_counts_matches_before_paging(
    client: httpx.AsyncClient, user: User
) -> None:
    for i in range(3):
        await make_task(client, user, title=f"t{i}", priority="high" if i else "low")
    response = await client.get(
        "/tasks", params={"priority": "high", "skip": 10}, headers=user.headers
    )
    assert response.json() == []
    assert response.headers["x-total-count"] == "2"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"skip": -1},
        {"sort_by": "password"},
        {"sort_order": "sideways"},
        {"priority": "urgent"},
        {"completed": "perhaps"},
        {"created_after": "yesterday"},
        {"search": "x" * 201},
    ],
)
async def test_list_tasks_invalid_query_returns_422(
    client: httpx.AsyncClient, user: User, params: dict[str, Any]
) -> None:
    assert_error(await client.get("/tasks", params=params, headers=user.headers), 422)


async def test_list_tasks_limit_100_is_accepted(client: httpx.AsyncClient, user: User) -> None:
    response = await client.get("/tasks", params={"limit": 100}, headers=user.headers)
    assert response.status_code == 200


async def test_unfiltered_total_is_the_counted_total_through_every_kind_of_write(
    client: httpx.AsyncClient,
) -> None:
    # The unfiltered X-Total-Count is the user row's task count (moved by each write in the
    # same transaction); a filtered one is counted. They must agree whatever the writes.
    user = await make_user(client)

    async def totals() -> tuple[int, int]:
        async def total(**params: Any) -> int:
            page = await client.get("/tasks", params={**params, "limit": 1}, headers=user.headers)
            return int(page.headers["x-total-count"])

        counted = await total(completed="true") + await total(completed="false")
        return await total(), counted

    tasks = [await make_task(client, user, title=f"t{i}", tags=["x"]) for i in range(7)]
    assert await totals() == (7, 7)
    refused = await client.post("/tasks", json={"title": " "}, headers=user.headers)
    assert refused.status_code == 422
    await client.delete(f"/tasks/{tasks[0]['id']}", headers=user.headers)
    racing = [client.delete(f"/tasks/{tasks[1]['id']}", headers=user.headers) for _ in range(3)]
    await asyncio.gather(*racing)
    stale = await client.delete(
        f"/tasks/{tasks[2]['id']}", headers={**user.headers, "If-Match": '"99"'}
    )
    assert stale.status_code == 412
    bulk = {"task_ids": [t["id"] for t in tasks[2:5]], "updates": {"completed": True}}
    assert (await client.patch("/tasks/bulk", json=bulk, headers=user.headers)).status_code == 200
    assert await totals() == (5, 5)
    other = await make_user(client)
    await make_task(client, other)
    assert await totals() == (5, 5)


@pytest.mark.parametrize("params", [{}, {"completed": "false"}, {"search": "t"}, {"tag": "x"}])
async def test_a_page_past_the_end_still_counts_every_match(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    user = await make_user(client)
    for i in range(3):
        await make_task(client, user, title=f"t{i}", tags=["x"])
    for skip, expected in ((0, 3), (2, 3), (3, 3), (50, 3)):
        page = await client.get(
            "/tasks", params={**params, "skip": skip, "limit": 2}, headers=user.headers
        )
        assert page.headers["x-total-count"] == str(expected), (params, skip)
        assert len(page.json()) == max(0, min(2, 3 - skip))
    none = await client.get("/tasks", params={**params, "tag": "nothing"}, headers=user.headers)
    assert (none.json(), none.headers["x-total-count"]) == ([], "0")
