"""PATCH /tasks/bulk and the tag endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import assert_error, make_task, make_user


async def test_bulk_update_changes_every_task(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    tasks = [await make_task(client, user, title=f"t{i}") for i in range(3)]
    ids = [task["id"] for task in tasks]
    response = await client.patch(
        "/tasks/bulk",
        json={
            "task_ids": [ids[2], ids[0], ids[2]],
            "updates": {"completed": True, "priority": "high"},
        },
        headers=user.headers,
    )
    assert response.status_code == 200
    updated = response.json()
    assert [task["id"] for task in updated] == sorted([ids[0], ids[2]])
    assert all(task["completed"] and task["priority"] == "high" for task in updated)
    untouched = await client.get(f"/tasks/{ids[1]}", headers=user.headers)
    assert untouched.json() == tasks[1]


async def test_bulk_update_with_a_missing_id_changes_nothing(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    response = await client.patch(
        "/tasks/bulk",
        json={"task_ids": [task["id"], 2147483647], "updates": {"title": "changed"}},
        headers=user.headers,
    )
    assert_error(response, 404, task_id=2147483647)
    assert (await client.get(f"/tasks/{task['id']}", headers=user.headers)).json() == task


async def test_bulk_update_with_another_users_id_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    owner, intruder = await make_user(client), await make_user(client)
    theirs = await make_task(client, owner, title="theirs")
    mine = await make_task(client, intruder, title="mine")
    response = await client.patch(
        "/tasks/bulk",
        json={"task_ids": [mine["id"], theirs["id"]], "updates": {"title": "pwned"}},
        headers=intruder.headers,
    )
    assert_error(response, 404)
    assert "theirs" not in response.text
    assert (await client.get(f"/tasks/{theirs['id']}", headers=owner.headers)).json() == theirs
    assert (await client.get(f"/tasks/{mine['id']}", headers=intruder.headers)).json() == mine


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"task_ids": [], "updates": {"completed": True}}, 422),
        ({"task_ids": [1], "updates": {}}, 400),
        ({"task_ids": [1]}, 422),
        ({"updates": {"completed": True}}, 422),
        ({"task_ids": [0], "updates": {"completed": True}}, 422),
        ({"task_ids": [2**31], "updates": {"completed": True}}, 422),
        ({"task_ids": ["x"], "updates": {"completed": True}}, 422),
        ({"task_ids": list(range(1, 1002)), "updates": {"completed": True}}, 422),
        ({"task_ids": [1], "updates": {"title": ""}}, 422),
        ({"task_ids": [1], "updates": {"title": None}}, 422),
        ({"task_ids": [1], "updates": {"user_id": 2}}, 422),
        ({"task_ids": [1], "updates": {"completed": True}, "extra": 1}, 422),
    ],
)
async def test_bulk_update_bad_body_is_rejected(
    client: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    user = await make_user(client)
    assert_error(await client.patch("/tasks/bulk", json=body, headers=user.headers), status)


async def test_add_tags_appends_without_doubling(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["a"])
    response = await client.post(
        f"/tasks/{task['id']}/tags", json=["b", "a", " c ", "b"], headers=user.headers
    )
    assert response.status_code == 200
    assert response.json()["tags"] == ["a", "b", "c"]
    again = await client.post(f"/tasks/{task['id']}/tags", json=["c"], headers=user.headers)
    assert again.json()["tags"] == ["a", "b", "c"]


@pytest.mark.parametrize("body", [[], "a", {"tags": ["a"]}, [""], ["x" * 51], [1], None])
async def test_add_tags_bad_body_returns_422(client: httpx.AsyncClient, body: Any) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    assert_error(
        await client.post(f"/tasks/{task['id']}/tags", json=body, headers=user.headers), 422
    )


async def test_add_tags_beyond_the_cap_returns_422(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=[f"t{i}" for i in range(50)])
    response = await client.post(
        f"/tasks/{task['id']}/tags", json=["one-more"], headers=user.headers
    )
    assert_error(response, 422)


async def test_remove_tag_returns_task_without_it(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["a", "b", "c"])
    response = await client.delete(f"/tasks/{task['id']}/tags/b", headers=user.headers)
    assert response.status_code == 200
    assert response.json()["tags"] == ["a", "c"]
    listing = await client.get("/tasks", params={"tag": "b"}, headers=user.headers)
    assert listing.json() == []


@pytest.mark.parametrize("tag", ["a/b", "/lead", "trail/", "a//b", "x%2Fy", "caf\u00e9 ?#&"])
async def test_any_tag_that_can_be_added_can_be_removed(
    client: httpx.AsyncClient, tag: str
) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["keep", tag])
    quoted = quote(tag, safe="")  # a client escapes the segment: "/" travels as %2F
    response = await client.delete(f"/tasks/{task['id']}/tags/{quoted}", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["keep"]
    again = await client.delete(f"/tasks/{task['id']}/tags/{quoted}", headers=user.headers)
    assert_error(again, 404, tag=tag, task_id=task["id"])


async def test_remove_tag_not_on_task_returns_404(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["a"])
    response = await client.delete(f"/tasks/{task['id']}/tags/zzz", headers=user.headers)
    assert_error(response, 404, tag="zzz", task_id=task["id"])


async def test_tag_endpoints_on_missing_task_return_404(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    assert_error(await client.post("/tasks/2147483647/tags", json=["a"], headers=user.headers), 404)
    assert_error(await client.delete("/tasks/2147483647/tags/a", headers=user.headers), 404)


async def test_update_tags_through_patch_replaces_them(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["a", "b"])
    response = await client.patch(
        f"/tasks/{task['id']}", json={"tags": ["b", "z"]}, headers=user.headers
    )
    assert response.json()["tags"] == ["b", "z"]
