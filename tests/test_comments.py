"""Comments on tasks: who may write, read, edit and delete them; paging; they go with the task."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import assert_error, make_task, make_user
from tests.test_sharing import share


async def test_comment_answers_201_with_author_and_lists_oldest_first(
    client: httpx.AsyncClient,
) -> None:
    owner, viewer = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    await share(client, owner, task["id"], viewer, "view")
    path = f"/tasks/{task['id']}/comments"
    first = await client.post(path, json={"content": "first"}, headers=owner.headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {"id", "task_id", "author", "content", "created_at", "updated_at"}
    assert body["author"] == {"id": owner.id, "username": owner.username}
    assert body["task_id"] == task["id"]
    assert body["content"] == "first"
    second = await client.post(path, json={"content": "second"}, headers=viewer.headers)
    assert second.status_code == 201
    assert second.json()["author"]["username"] == viewer.username
    for reader in (owner, viewer):
        listed = await client.get(path, headers=reader.headers)
        assert listed.status_code == 200
        assert [c["content"] for c in listed.json()] == ["first", "second"]
        assert listed.headers["x-total-count"] == "2"
    assert listed.json()[0] == body


async def test_comments_page_with_total_and_links(client: httpx.AsyncClient) -> None:
    owner = await make_user(client)
    task = await make_task(client, owner)
    path = f"/tasks/{task['id']}/comments"
    for i in range(5):
        await client.post(path, json={"content": f"c{i}"}, headers=owner.headers)
    page = await client.get(path, params={"skip": 1, "limit": 2}, headers=owner.headers)
    assert [c["content"] for c in page.json()] == ["c1", "c2"]
    assert page.headers["x-total-count"] == "5"
    assert f"{path}?skip=3&limit=2" in page.headers["link"]
    past = await client.get(path, params={"skip": 10}, headers=owner.headers)
    assert past.json() == []
    assert past.headers["x-total-count"] == "5"
    assert_error(await client.get(path, params={"limit": 101}, headers=owner.headers), 422)


@pytest.mark.parametrize("content", ["", "x" * 1001, "nul\x00"])
async def test_comment_content_is_validated(client: httpx.AsyncClient, content: str) -> None:
    owner = await make_user(client)
    task = await make_task(client, owner)
    response = await client.post(
        f"/tasks/{task['id']}/comments", json={"content": content}, headers=owner.headers
    )
    assert_error(response, 422)


async def test_only_the_author_edits_and_author_or_owner_deletes(
    client: httpx.AsyncClient,
) -> None:
    owner, editor, stranger = [await make_user(client) for _ in range(3)]
    task = await make_task(client, owner)
    await share(client, owner, task["id"], editor, "edit")
    path = f"/tasks/{task['id']}/comments"
    by_owner = (await client.post(path, json={"content": "o"}, headers=owner.headers)).json()
    by_editor = (await client.post(path, json={"content": "e"}, headers=editor.headers)).json()
    edit = {"content": "changed"}
    for comment, other in ((by_owner, editor), (by_editor, owner), (by_owner, stranger)):
        url = f"/comments/{comment['id']}"
        assert_error(await client.patch(url, json=edit, headers=other.headers), 403)
    assert_error(await client.delete(f"/comments/{by_owner['id']}", headers=editor.headers), 403)
    assert_error(await client.delete(f"/comments/{by_editor['id']}", headers=stranger.headers), 403)
    changed = await client.patch(f"/comments/{by_editor['id']}", json=edit, headers=editor.headers)
    assert changed.status_code == 200
    assert changed.json()["content"] == "changed"
    assert changed.json()["author"]["id"] == editor.id
    assert changed.json()["created_at"] == by_editor["created_at"]
    assert changed.json()["updated_at"] >= by_editor["updated_at"]
    # The task's owner deletes anyone's comment; the author their own.
    assert (
        await client.delete(f"/comments/{by_editor['id']}", headers=owner.headers)
    ).status_code == 204
    assert (
        await client.delete(f"/comments/{by_owner['id']}", headers=owner.headers)
    ).status_code == 204
    assert_error(await client.delete(f"/comments/{by_owner['id']}", headers=owner.headers), 404)
    assert_error(await client.patch("/comments/2147483647", json=edit, headers=owner.headers), 404)
    assert (await client.get(path, headers=owner.headers)).json() == []


async def test_stranger_neither_reads_nor_writes_comments(client: httpx.AsyncClient) -> None:
    owner, stranger = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    path = f"/tasks/{task['id']}/comments"
    await client.post(path, json={"content": "private"}, headers=owner.headers)
    response = await client.get(path, headers=stranger.headers)
    assert_error(response, 403)
    assert "private" not in response.text
    assert_error(await client.post(path, json={"content": "x"}, headers=stranger.headers), 403)
    assert_error(await client.get("/tasks/2147483647/comments", headers=owner.headers), 404)


async def test_comments_go_with_the_task_and_a_removed_share_ends_editing(
    client: httpx.AsyncClient,
) -> None:
    owner, viewer = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    await share(client, owner, task["id"], viewer, "view")
    path = f"/tasks/{task['id']}/comments"
    comment = (await client.post(path, json={"content": "v"}, headers=viewer.headers)).json()
    await client.delete(f"/tasks/{task['id']}/share/{viewer.username}", headers=viewer.headers)
    url = f"/comments/{comment['id']}"
    assert_error(await client.patch(url, json={"content": "w"}, headers=viewer.headers), 403)
    assert (await client.delete(f"/tasks/{task['id']}", headers=owner.headers)).status_code == 204
    assert_error(await client.delete(url, headers=owner.headers), 404)


async def test_comment_and_share_honour_idempotency_keys(client: httpx.AsyncClient) -> None:
    owner, bob = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    headers = {**owner.headers, "Idempotency-Key": "comment-once"}
    path = f"/tasks/{task['id']}/comments"
    first = await client.post(path, json={"content": "once"}, headers=headers)
    again = await client.post(path, json={"content": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert (await client.get(path, headers=owner.headers)).headers["x-total-count"] == "1"
    body = {"shared_with_username": bob.username, "permission": "view"}
    headers["Idempotency-Key"] = "share-once"
    shared = [
        await client.post(f"/tasks/{task['id']}/share", json=body, headers=headers)
        for _ in range(2)
    ]
    assert [r.status_code for r in shared] == [201, 201]
    assert shared[1].headers["idempotent-replayed"] == "true"
