"""Sharing a task: the share routes, what a share allows, shared-with-me, and the owner's stats
and ETags across users (issue #13; the full matrix is tests/test_permission_matrix.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error, make_task, make_user


async def share(
    client: httpx.AsyncClient, owner: User, task_id: int, to: User, permission: str = "view"
) -> httpx.Response:
    body = {"shared_with_username": to.username, "permission": permission}
    return await client.post(f"/tasks/{task_id}/share", json=body, headers=owner.headers)


async def _shared_task(
    client: httpx.AsyncClient, permission: str = "edit", **fields: Any
) -> tuple[User, User, dict[str, Any]]:
    owner, other = await make_user(client), await make_user(client)
    task = await make_task(client, owner, **fields)
    assert (await share(client, owner, task["id"], other, permission)).status_code == 201
    return owner, other, task


async def test_share_task_answers_201_with_the_share(client: httpx.AsyncClient) -> None:
    owner, bob = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    response = await share(client, owner, task["id"], bob, "edit")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["task_id"] == task["id"]
    assert body["shared_with"] == {"id": bob.id, "username": bob.username}
    assert body["permission"] == "edit"
    assert body["created_at"].endswith("Z")
    listed = await client.get(f"/tasks/{task['id']}/shares", headers=owner.headers)
    assert listed.status_code == 200
    assert listed.json() == [body]


async def test_share_twice_yourself_or_unknown_user_is_refused(client: httpx.AsyncClient) -> None:
    owner, bob = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    assert (await share(client, owner, task["id"], bob)).status_code == 201
    assert_error(await share(client, owner, task["id"], bob, "edit"), 409)
    assert_error(await share(client, owner, task["id"], owner), 400)
    ghost = {"shared_with_username": "no_such_user_xyz", "permission": "view"}
    response = await client.post(f"/tasks/{task['id']}/share", json=ghost, headers=owner.headers)
    assert_error(response, 404, username="no_such_user_xyz")
    bad = {"shared_with_username": bob.username, "permission": "admin"}
    response = await client.post(f"/tasks/{task['id']}/share", json=bad, headers=owner.headers)
    assert_error(response, 422)
    assert_error(await share(client, owner, 2**31 - 1, bob), 404)


async def test_view_share_reads_but_cannot_write(client: httpx.AsyncClient) -> None:
    owner, viewer, task = await _shared_task(client, "view", title="Plan")
    path = f"/tasks/{task['id']}"
    read = await client.get(path, headers=viewer.headers)
    assert read.status_code == 200
    assert read.json()["title"] == "Plan"
    assert read.json()["user_id"] == owner.id
    assert_error(await client.patch(path, json={"title": "x"}, headers=viewer.headers), 403)
    assert_error(await client.post(f"{path}/tags", json=["a"], headers=viewer.headers), 403)
    assert_error(await client.delete(path, headers=viewer.headers), 403)


async def test_edit_share_writes_and_bumps_the_owners_stats(client: httpx.AsyncClient) -> None:
    owner, editor, task = await _shared_task(client, "edit")
    stats = await client.get("/tasks/stats", headers=owner.headers)
    assert stats.json()["completed"] == 0
    assert (await client.get("/tasks/stats", headers=owner.headers)).headers["x-cache"] == "HIT"
    path = f"/tasks/{task['id']}"
    changed = await client.patch(path, json={"completed": True}, headers=editor.headers)
    assert changed.status_code == 200, changed.text
    tagged = await client.post(f"{path}/tags", json=["shared"], headers=editor.headers)
    assert tagged.json()["tags"] == ["shared"]
    after = await client.get("/tasks/stats", headers=owner.headers)
    assert after.headers["x-cache"] == "MISS"
    assert after.json()["completed"] == 1
    assert after.json()["by_tag"] == {"shared": 1}  # the tag counts as the owner's
    # The editor's own lists and stats do not include it.
    assert (await client.get("/tasks", headers=editor.headers)).json() == []
    assert (await client.get("/tasks/stats", headers=editor.headers)).json()["total"] == 0
    # And only the owner deletes it.
    assert_error(await client.delete(path, headers=editor.headers), 403)


async def test_owners_stale_etag_after_an_editors_change_is_412(
    client: httpx.AsyncClient,
) -> None:
    owner, editor, task = await _shared_task(client, "edit")
    path = f"/tasks/{task['id']}"
    etag = (await client.get(path, headers=owner.headers)).headers["etag"]
    changed = await client.patch(
        path, json={"title": "editor"}, headers={**editor.headers, "If-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    stale = await client.patch(
        path, json={"title": "owner"}, headers={**owner.headers, "If-Match": etag}
    )
    assert_error(stale, 412)
    assert (await client.get(path, headers=owner.headers)).json()["title"] == "editor"


async def test_stranger_still_gets_403_without_data(client: httpx.AsyncClient) -> None:
    _, _, task = await _shared_task(client, "edit", title="secret title")
    stranger = await make_user(client)
    response = await client.get(f"/tasks/{task['id']}", headers=stranger.headers)
    assert_error(response, 403)
    assert "secret" not in response.text


async def test_bulk_with_a_task_the_caller_cannot_write_is_404_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    owner, viewer, viewed = await _shared_task(client, "view")
    editable = await make_task(client, owner)
    await share(client, owner, editable["id"], viewer, "edit")
    mine = await make_task(client, viewer)
    body = {"task_ids": [mine["id"], editable["id"], viewed["id"]], "updates": {"priority": "low"}}
    assert_error(await client.patch("/tasks/bulk", json=body, headers=viewer.headers), 404)
    body["task_ids"] = [mine["id"], editable["id"]]
    done = await client.patch("/tasks/bulk", json=body, headers=viewer.headers)
    assert done.status_code == 200
    assert [t["priority"] for t in done.json()] == ["low", "low"]
    owners_view = await client.get(f"/tasks/{editable['id']}", headers=owner.headers)
    assert owners_view.json()["priority"] == "low"


async def test_update_and_remove_share_change_access_at_once(client: httpx.AsyncClient) -> None:
    owner, bob, task = await _shared_task(client, "view")
    path = f"/tasks/{task['id']}"
    assert_error(await client.patch(path, json={"title": "b"}, headers=bob.headers), 403)
    share_path = f"{path}/share/{bob.username}"
    updated = await client.put(share_path, json={"permission": "edit"}, headers=owner.headers)
    assert updated.status_code == 200
    assert updated.json()["permission"] == "edit"
    assert (await client.patch(path, json={"title": "b"}, headers=bob.headers)).status_code == 200
    assert (await client.delete(share_path, headers=owner.headers)).status_code == 204
    assert_error(await client.get(path, headers=bob.headers), 403)
    assert_error(await client.delete(share_path, headers=owner.headers), 404)
    missing = await client.put(share_path, json={"permission": "view"}, headers=owner.headers)
    assert_error(missing, 404)


async def test_recipient_may_leave_but_not_remove_others(client: httpx.AsyncClient) -> None:
    owner, bob, task = await _shared_task(client, "edit")
    carol = await make_user(client)
    await share(client, owner, task["id"], carol)
    path = f"/tasks/{task['id']}"
    assert_error(await client.delete(f"{path}/share/{carol.username}", headers=bob.headers), 403)
    assert_error(await client.get(f"{path}/shares", headers=bob.headers), 403)
    left = await client.delete(f"{path}/share/{bob.username}", headers=bob.headers)
    assert left.status_code == 204
    assert_error(await client.get(path, headers=bob.headers), 403)
    remaining = await client.get(f"{path}/shares", headers=owner.headers)
    assert [s["shared_with"]["username"] for s in remaining.json()] == [carol.username]


async def test_shared_with_me_pages_like_get_tasks(client: httpx.AsyncClient) -> None:
    alice, bob, carol = [await make_user(client) for _ in range(3)]
    tasks = []
    for i in range(5):
        owner = alice if i % 2 == 0 else carol
        task = await make_task(client, owner, title=f"shared {i}", tags=[f"t{i}"])
        await share(client, owner, task["id"], bob, "edit" if i == 0 else "view")
        tasks.append((owner, task))
    await make_task(client, alice, title="not shared")
    page = await client.get(
        "/tasks/shared-with-me", params={"limit": 2, "skip": 2}, headers=bob.headers
    )
    assert page.status_code == 200, page.text
    assert page.headers["x-total-count"] == "5"
    assert 'rel="next"' in page.headers["link"]
    assert "/tasks/shared-with-me?skip=4&limit=2" in page.headers["link"]
    body = page.json()
    assert [t["id"] for t in body] == [tasks[2][1]["id"], tasks[3][1]["id"]]
    owner, task = tasks[3]
    assert body[1] == {
        **task, "permission": "view", "owner": {"id": owner.id, "username": owner.username}
    }  # fmt: skip
    first = await client.get(
        "/tasks/shared-with-me", params={"sort_by": "id", "sort_order": "desc"},
        headers=bob.headers,
    )  # fmt: skip
    assert [t["id"] for t in first.json()] == [t["id"] for _, t in reversed(tasks)]
    assert first.json()[-1]["permission"] == "edit"
    tagged = await client.get("/tasks/shared-with-me", params={"tag": "t1"}, headers=bob.headers)
    assert [t["id"] for t in tagged.json()] == [tasks[1][1]["id"]]
    assert tagged.headers["x-total-count"] == "1"
    past = await client.get("/tasks/shared-with-me", params={"skip": 50}, headers=bob.headers)
    assert past.json() == []
    assert past.headers["x-total-count"] == "5"
    assert (await client.get("/tasks/shared-with-me", headers=alice.headers)).json() == []


async def test_deleting_the_task_removes_its_shares(client: httpx.AsyncClient) -> None:
    owner, bob, task = await _shared_task(client, "edit")
    assert (await client.delete(f"/tasks/{task['id']}", headers=owner.headers)).status_code == 204
    listed = await client.get("/tasks/shared-with-me", headers=bob.headers)
    assert listed.json() == []
    assert listed.headers["x-total-count"] == "0"


@pytest.mark.parametrize("name", ["ab", "a" * 51, "bad name", "x\u00e9y"])
async def test_share_path_username_is_validated(client: httpx.AsyncClient, name: str) -> None:
    owner, _, task = await _shared_task(client, "view")
    response = await client.delete(f"/tasks/{task['id']}/share/{name}", headers=owner.headers)
    assert_error(response, 422)
