"""The one record: every write leaves exactly one event; the change feed and the activity log
read them (both databases)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from db_models import utcnow
from events_models import ChangesPage
from services import feed
from services.events import EVENTS, Position
from tests.conftest import ROOT, assert_error, make_task, make_user
from tests.file_helpers import upload
from tests.jobs_helpers import readable
from tests.test_sharing import share


async def changes(client: httpx.AsyncClient, user: Any, cursor: str | None = None,
                  limit: int = 1000) -> dict[str, Any]:  # fmt: skip
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    response = await client.get("/changes", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    # The bytes written by hand are ChangesPage's own JSON (one serialiser per schema).
    assert response.content == ChangesPage.model_validate_json(response.content).model_dump_json(
    ).encode()  # fmt: skip
    return body


async def all_changes(client: httpx.AsyncClient, user: Any, limit: int = 1000) -> list[Any]:
    """Everything the feed hands the user, once what was committed is readable."""
    await readable(client)
    seen, cursor = [], None
    while True:
        page = await changes(client, user, cursor, limit)
        seen.extend(page["changes"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return seen


async def test_task_writes_leave_one_event_each(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    task = await make_task(client, alice, title="t", tags=["a"])
    patched = await client.patch(
        f"/tasks/{task['id']}", json={"title": "u", "priority": "high"}, headers=alice.headers
    )
    assert patched.status_code == 200
    done = await client.patch(
        f"/tasks/{task['id']}", json={"completed": True}, headers=alice.headers
    )
    same = await client.patch(f"/tasks/{task['id']}", json={"title": "u"}, headers=alice.headers)
    assert same.status_code == 200
    tags = await client.post(f"/tasks/{task['id']}/tags", json=["b"], headers=alice.headers)
    assert tags.status_code in (200, 201), tags.text
    deleted = await client.delete(f"/tasks/{task['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    events = await all_changes(client, alice)
    assert [e["type"] for e in events] == [
        "task.created", "task.updated", "task.completed", "task.updated", "task.deleted",
    ]  # fmt: skip
    assert all(e["actor_id"] == alice.id for e in events)
    assert events[0]["data"] == {"task": task}
    assert events[1]["data"]["changes"] == {
        "title": {"old": "t", "new": "u"}, "priority": {"old": "medium", "new": "high"},
    }  # fmt: skip
    assert events[1]["data"]["task"] == patched.json()
    assert events[2]["data"]["changes"] == {"completed": {"old": False, "new": True}}
    assert events[2]["data"]["task"] == done.json()
    assert events[3]["data"]["changes"] == {"tags": {"old": ["a"], "new": ["a", "b"]}}
    assert events[4]["data"] == {"task": {"id": task["id"]}}


_FIELDS = {
    "title": st.sampled_from(["a", "b"]),
    "description": st.sampled_from([None, "x", "y"]),
    "completed": st.booleans(),
    "priority": st.sampled_from(["low", "medium", "high"]),
    "tags": st.sampled_from([[], ["a"], ["a", "b"]]),
}


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    first=st.fixed_dictionaries({}, optional=_FIELDS),
    second=st.fixed_dictionaries({}, optional=_FIELDS),
)
async def test_patch_changes_name_exactly_the_changed_fields(
    app: FastAPI, first: dict[str, Any], second: dict[str, Any]
) -> None:
    from tests.conftest import client_for

    async with client_for(app) as client:
        user = await make_user(client)
        task = await make_task(client, user, **{"title": "a", **first})
        before = (await all_changes(client, user))[-1]["data"]["task"]
        response = await client.patch(f"/tasks/{task['id']}", json=second, headers=user.headers)
        assert response.status_code == 200, response.text
        after = response.json()
        events = await all_changes(client, user)
        expected = {
            name: {"old": before[name], "new": after[name]}
            for name in second
            if before[name] != after[name]
        }
        if not expected:
            assert len(events) == 1
            return
        assert len(events) == 2
        kind = (
            "task.completed" if after["completed"] and not before["completed"] else "task.updated"
        )
        assert events[1]["type"] == kind
        assert events[1]["data"] == {"task": after, "changes": expected}


async def test_bulk_patch_writes_one_event_per_task(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    ids = [(await make_task(client, user))["id"] for _ in range(3)]
    body = {"task_ids": ids, "updates": {"priority": "low"}}
    response = await client.patch("/tasks/bulk", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    events = (await all_changes(client, user))[3:]
    assert sorted(e["data"]["task"]["id"] for e in events) == ids
    assert {e["type"] for e in events} == {"task.updated"}


async def test_refused_writes_leave_no_event(client: httpx.AsyncClient) -> None:
    alice, mallory = await make_user(client), await make_user(client)
    task = await make_task(client, alice)
    path = f"/tasks/{task['id']}"
    assert_error(await client.patch(path, json={"title": "x"}, headers=mallory.headers), 403)
    assert_error(await client.delete(path, headers=mallory.headers), 403)
    stale = {**alice.headers, "If-Match": '"999"'}
    assert_error(await client.patch(path, json={"title": "x"}, headers=stale), 412)
    assert_error(await client.patch(path, json={"priority": "bad"}, headers=alice.headers), 422)
    assert_error(
        await client.patch("/tasks/999999999", json={"title": "x"}, headers=alice.headers), 404
    )
    assert [e["type"] for e in await all_changes(client, alice)] == ["task.created"]
    assert await all_changes(client, mallory) == []


async def test_shared_task_events_reach_the_recipient_while_shared(
    client: httpx.AsyncClient,
) -> None:
    owner, bob = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    assert (await share(client, owner, task["id"], bob, "edit")).status_code == 201
    put = await client.put(
        f"/tasks/{task['id']}/share/{bob.username}", json={"permission": "view"},
        headers=owner.headers,
    )  # fmt: skip
    assert put.status_code == 200, put.text
    comment = await client.post(
        f"/tasks/{task['id']}/comments", json={"content": "hi"}, headers=bob.headers
    )
    assert comment.status_code == 201
    cid = comment.json()["id"]
    edited = await client.patch(f"/comments/{cid}", json={"content": "ho"}, headers=bob.headers)
    assert edited.status_code == 200
    assert (await client.delete(f"/comments/{cid}", headers=bob.headers)).status_code == 204
    up = await upload(client, task["id"], "a.txt", b"hello", headers=owner.headers)
    assert up.status_code == 201, up.text
    fid = up.json()["id"]
    assert (await client.delete(f"/files/{fid}", headers=owner.headers)).status_code == 204
    assert (await client.delete(f"/tasks/{task['id']}", headers=owner.headers)).status_code == 204
    kinds = [
        "share.created", "share.created", "comment.created", "comment.updated",
        "comment.deleted", "file.uploaded", "file.deleted", "task.deleted",
    ]  # fmt: skip
    owner_events = await all_changes(client, owner)
    assert [e["type"] for e in owner_events] == ["task.created", *kinds]
    assert [e["type"] for e in await all_changes(client, bob)] == kinds
    by_type = {e["type"]: e for e in owner_events}
    assert by_type["comment.updated"]["data"]["changes"] == {"content": {"old": "hi", "new": "ho"}}
    assert by_type["comment.updated"]["actor_id"] == bob.id
    assert owner_events[2]["data"] == {
        "task_id": task["id"], "shared_with": {"id": bob.id, "username": bob.username},
        "permission": "view", "changes": {"permission": {"old": "edit", "new": "view"}},
    }  # fmt: skip
    assert by_type["file.uploaded"]["data"] == {"task_id": task["id"], "file": up.json()}
    assert by_type["file.deleted"]["data"] == {
        "task_id": task["id"], "file": {"id": fid, "filename": "a.txt"}
    }  # fmt: skip
    history = await client.get("/activity", headers=bob.headers)
    assert history.status_code == 200
    assert next((a["resource_type"], a["action"]) for a in history.json()) == ("task", "deleted")


async def test_share_deleted_reaches_the_former_recipient(client: httpx.AsyncClient) -> None:
    owner, bob = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    assert (await share(client, owner, task["id"], bob)).status_code == 201
    left = await client.delete(f"/tasks/{task['id']}/share/{bob.username}", headers=bob.headers)
    assert left.status_code == 204
    await client.patch(f"/tasks/{task['id']}", json={"title": "later"}, headers=owner.headers)
    events = await all_changes(client, bob)
    assert [e["type"] for e in events] == ["share.created", "share.deleted"]
    assert events[1]["actor_id"] == bob.id


async def test_feed_pages_visit_every_event_once(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for n in range(7):
        await make_task(client, user, title=f"t{n}")
    events = await all_changes(client, user, limit=2)
    assert [e["data"]["task"]["title"] for e in events] == [f"t{n}" for n in range(7)]
    again = await changes(client, user, (await changes(client, user))["next_cursor"])
    assert again["changes"] == []
    assert again["has_more"] is False
    later = await make_task(client, user, title="late")
    resumed = await changes(client, user, again["next_cursor"])
    assert [e["data"]["task"]["id"] for e in resumed["changes"]] == [later["id"]]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cursor=st.text(max_size=60)
    | st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode())
)
async def test_garbage_cursors_are_400(app: FastAPI, cursor: str) -> None:
    from tests.conftest import client_for

    async with client_for(app) as client:
        user = await make_user(client)
        response = await client.get("/changes", params={"cursor": cursor}, headers=user.headers)
        assert response.status_code in (400, 422), response.text


async def test_old_cursor_is_410(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(client)
    days = 400
    old = feed.encode_cursor(Position(0, 0), utcnow() - timedelta(days=days + 1))
    response = await client.get("/changes", params={"cursor": old}, headers=user.headers)
    assert_error(response, 410)


async def test_purge_removes_only_old_events(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(client)
    first, second = await make_task(client, user), await make_task(client, user)
    engine = app.state.engine
    async with engine.begin() as connection:
        await connection.execute(
            update(EVENTS).where(EVENTS.c.task_id == first["id"])
            .values(occurred_at=utcnow() - timedelta(days=400))
        )  # fmt: skip
    # The maintenance command (run daily from cron), in a process of its own.
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING",
        "DATABASE_URL": app.state.settings.database_url, "EVENT_RETENTION_DAYS": "30",
    }  # fmt: skip
    command = [sys.executable, str(ROOT / "manage.py"), "purge-events"]
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["purged"] >= 1
    left = await all_changes(client, user)
    assert [e["data"]["task"]["id"] for e in left] == [second["id"]]
    again = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"purged": 0}


async def test_activity_stats_and_task_history(client: httpx.AsyncClient) -> None:
    owner, other = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    await client.patch(f"/tasks/{task['id']}", json={"completed": True}, headers=owner.headers)
    stats = await client.get("/activity/stats", headers=owner.headers)
    assert stats.json() == {"total": 2, "by_type": {"task.completed": 1, "task.created": 1}}
    history = await client.get(f"/activity/tasks/{task['id']}", headers=owner.headers)
    assert history.status_code == 200
    assert history.headers["x-total-count"] == "2"
    rows = history.json()
    assert rows[0]["action"] == "completed"
    assert rows[0]["actor"]["id"] == owner.id
    assert rows[0]["changes"]["changes"] == {"completed": {"old": False, "new": True}}
    assert_error(await client.get(f"/activity/tasks/{task['id']}", headers=other.headers), 403)
    assert_error(await client.get("/activity/tasks/999999999", headers=owner.headers), 404)
    only = await client.get("/activity", params={"action": "created"}, headers=owner.headers)
    assert [r["action"] for r in only.json()] == ["created"]


async def test_concurrent_writers_are_each_seen_once(client: httpx.AsyncClient) -> None:
    users = [await make_user(client) for _ in range(3)]
    owner = users[0]

    async def write(n: int) -> int:
        return int((await make_task(client, owner, title=f"c{n}"))["id"])

    ids = await asyncio.gather(*(write(n) for n in range(30)))
    events = await all_changes(client, owner, limit=4)
    assert sorted(e["data"]["task"]["id"] for e in events) == sorted(ids)
    assert len({e["id"] for e in events}) == len(events)
    assert orjson.dumps(events)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    value=st.integers().map(str)
    | st.floats(allow_nan=False).map(str)
    | st.dates().map(str)
    | st.datetimes().map(lambda moment: moment.isoformat())  # no UTC offset
    | st.text(max_size=30).filter(lambda text: not text[:4].isdigit()),
    path=st.sampled_from(["/activity", "/activity/stats"]),
    name=st.sampled_from(["start_date", "end_date"]),
)
async def test_activity_times_are_iso_with_an_offset_or_422(
    app: FastAPI, value: str, path: str, name: str
) -> None:
    """Numbers are not read as seconds since 1970, nor a time without its offset as anyone's
    local time: 422, as the schema's `date-time` says."""
    from tests.conftest import client_for

    async with client_for(app) as client:
        user = await make_user(client)
        response = await client.get(path, params={name: value}, headers=user.headers)
        assert_error(response, 422)


async def test_activity_times_with_an_offset_are_taken(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    await make_task(client, user)
    for value in ("2000-01-01T00:00:00Z", "2000-01-01T01:00:00+01:00", "2000-01-01 00:00:00Z"):
        response = await client.get("/activity", params={"start_date": value}, headers=user.headers)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 1
