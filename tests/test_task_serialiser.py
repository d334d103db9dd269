"""One serialiser for a task (services.task_store.task_json), pinned to TaskRead's own.

Every route that answers with tasks writes their JSON bytes itself (no second validation by
FastAPI). These tests hold those bytes to `TaskRead.model_dump_json()` of the same data, on
whichever database the suite runs: every field, nulls, tag order, dates and timestamps.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from pydantic import TypeAdapter

from models import TaskRead
from sharing_models import SharedTaskRead
from tests.conftest import make_task, make_user

_TASKS = TypeAdapter(list[TaskRead])
_SHARED = TypeAdapter(list[SharedTaskRead])

BODIES: list[dict[str, Any]] = [
    {"title": "minimal"},  # description and due_date null, no tags
    {
        "title": "  every field, stripped  ",
        "description": 'quotes " and \\ backslash, \u00e9t\u00e9, \U0001f600 and a\nnewline',
        "completed": True,
        "priority": "high",
        "due_date": "2030-02-28",
        "tags": ["zeta", "alpha", "m\u00fcnchen"],  # kept in the order given, not sorted
    },
    {"title": "first day", "due_date": "0001-01-01", "priority": "low", "tags": ["x"]},
    {"title": "last day", "due_date": "9999-12-31", "description": ""},
]


def _pinned_one(response: httpx.Response) -> None:
    assert response.status_code in (200, 201), response.text
    expected = TaskRead.model_validate_json(response.content).model_dump_json().encode()
    assert response.content == expected
    # And the fields are exactly TaskRead's, in its order.
    assert list(orjson.loads(response.content)) == list(TaskRead.model_fields)


def _pinned_many(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.content == _TASKS.dump_json(_TASKS.validate_json(response.content))


@pytest.mark.parametrize("body", BODIES, ids=[body["title"].strip() for body in BODIES])
async def test_every_task_route_writes_what_task_read_writes(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    user = await make_user(client)
    created = await client.post("/tasks", json=body, headers=user.headers)
    _pinned_one(created)
    task_id = created.json()["id"]
    path = f"/tasks/{task_id}"
    _pinned_one(await client.get(path, headers=user.headers))
    _pinned_one(await client.patch(path, json={"priority": "medium"}, headers=user.headers))
    _pinned_one(await client.patch(path, json={}, headers=user.headers))
    _pinned_one(await client.post(f"{path}/tags", json=["added"], headers=user.headers))
    _pinned_one(await client.delete(f"{path}/tags/added", headers=user.headers))
    bulk = {"task_ids": [task_id], "updates": {"completed": False}}
    _pinned_many(await client.patch("/tasks/bulk", json=bulk, headers=user.headers))
    _pinned_many(await client.get("/tasks", headers=user.headers))
    # What was answered is what is stored: the read gives the same bytes as the last write.
    last = await client.patch(path, json={"title": "again"}, headers=user.headers)
    assert last.content == (await client.get(path, headers=user.headers)).content


async def test_a_page_of_many_tasks_is_pinned_too(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for body in BODIES:
        await make_task(client, user, **body)
    page = await client.get("/tasks", params={"sort_by": "due_date"}, headers=user.headers)
    _pinned_many(page)
    assert len(page.json()) == len(BODIES)
    assert (await client.get("/tasks", params={"skip": 99}, headers=user.headers)).content == b"[]"


async def test_shared_with_me_is_pinned_to_shared_task_read(client: httpx.AsyncClient) -> None:
    owner, recipient = await make_user(client), await make_user(client)
    for body, permission in zip(BODIES, ("view", "edit", "view", "edit"), strict=True):
        task = await make_task(client, owner, **body)
        shared = {"shared_with_username": recipient.username, "permission": permission}
        await client.post(f"/tasks/{task['id']}/share", json=shared, headers=owner.headers)
    page = await client.get("/tasks/shared-with-me", headers=recipient.headers)
    assert page.status_code == 200, page.text
    assert len(page.json()) == len(BODIES)
    assert page.content == _SHARED.dump_json(_SHARED.validate_json(page.content))
    assert list(page.json()[0]) == list(SharedTaskRead.model_fields)
