"""The permission table of issue #13, whole: owner, editor (edit share), viewer (view share) and
stranger against every task, tag, bulk, file, comment and share route. Each case asserts the
status and, when the request is refused, that the task (its bytes and ETag as the owner reads
them) and its files, comments and shares are exactly as they were."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error, make_task, make_user
from tests.file_helpers import TEXT, upload
from tests.test_sharing import share

ROLES = ("owner", "editor", "viewer", "stranger")


@dataclass
class World:
    users: dict[str, User]
    newcomer: User  # not shared with: whom the share routes try to add
    task: dict[str, Any]
    files: dict[str, int]  # by uploader: "owner", "editor"
    comments: dict[str, int]  # by author: "owner", "viewer"

    @property
    def path(self) -> str:
        return f"/tasks/{self.task['id']}"


async def _world(client: httpx.AsyncClient) -> World:
    users = {role: await make_user(client) for role in ROLES}
    owner = users["owner"]
    task = await make_task(client, owner, title="matrix", tags=["t0"])
    await share(client, owner, task["id"], users["editor"], "edit")
    await share(client, owner, task["id"], users["viewer"], "view")
    files = {}
    for role in ("owner", "editor"):
        uploaded = await upload(client, task["id"], "n.txt", TEXT, headers=users[role].headers)
        assert uploaded.status_code == 201, uploaded.text
        files[role] = uploaded.json()["id"]
    comments = {}
    for role in ("owner", "viewer"):
        body = {"content": f"by {role}"}
        made = await client.post(
            f"/tasks/{task['id']}/comments", json=body, headers=users[role].headers
        )
        comments[role] = made.json()["id"]
    return World(users, await make_user(client), task, files, comments)


Request = Callable[[World, User], tuple[str, str, dict[str, Any]]]


def _bulk(w: World, _: User) -> tuple[str, str, dict[str, Any]]:
    return (
        "PATCH",
        "/tasks/bulk",
        {"json": {"task_ids": [w.task["id"]], "updates": {"priority": "low"}}},
    )


def _another(w: World, caller: User) -> User:
    """A recipient other than the caller."""
    return w.users["editor" if caller is w.users["viewer"] else "viewer"]


def _upload(w: World, _: User) -> tuple[str, str, dict[str, Any]]:
    return "UPLOAD", w.path, {}


# (name, request, status for owner, editor, viewer, stranger)
ROUTES: list[tuple[str, Request, tuple[int, int, int, int]]] = [
    ("get task", lambda w, u: ("GET", w.path, {}), (200, 200, 200, 403)),
    ("patch task", lambda w, u: ("PATCH", w.path, {"json": {"title": "x"}}), (200, 200, 403, 403)),
    ("delete task", lambda w, u: ("DELETE", w.path, {}), (204, 403, 403, 403)),
    ("add tags", lambda w, u: ("POST", f"{w.path}/tags", {"json": ["n"]}), (200, 200, 403, 403)),
    ("remove tag", lambda w, u: ("DELETE", f"{w.path}/tags/t0", {}), (200, 200, 403, 403)),
    ("bulk", _bulk, (200, 200, 404, 404)),
    ("list files", lambda w, u: ("GET", f"{w.path}/files", {}), (200, 200, 200, 403)),
    ("upload", _upload, (201, 201, 403, 403)),
    ("download", lambda w, u: ("GET", f"/files/{w.files['owner']}", {}), (200, 200, 200, 403)),
    (
        "delete owner's file",
        lambda w, u: ("DELETE", f"/files/{w.files['owner']}", {}),
        (204, 403, 403, 403),
    ),
    (
        "delete editor's file",
        lambda w, u: ("DELETE", f"/files/{w.files['editor']}", {}),
        (204, 204, 403, 403),
    ),
    ("list comments", lambda w, u: ("GET", f"{w.path}/comments", {}), (200, 200, 200, 403)),
    (
        "comment",
        lambda w, u: ("POST", f"{w.path}/comments", {"json": {"content": "hi"}}),
        (201, 201, 201, 403),
    ),
    (
        "edit owner's comment",
        lambda w, u: ("PATCH", f"/comments/{w.comments['owner']}", {"json": {"content": "e"}}),
        (200, 403, 403, 403),
    ),
    (
        "delete owner's comment",
        lambda w, u: ("DELETE", f"/comments/{w.comments['owner']}", {}),
        (204, 403, 403, 403),
    ),
    (
        "delete viewer's comment",
        lambda w, u: ("DELETE", f"/comments/{w.comments['viewer']}", {}),
        (204, 403, 204, 403),
    ),
    (
        "share",
        lambda w, u: (
            "POST",
            f"{w.path}/share",
            {"json": {"shared_with_username": w.newcomer.username, "permission": "view"}},
        ),
        (201, 403, 403, 403),
    ),
    ("list shares", lambda w, u: ("GET", f"{w.path}/shares", {}), (200, 403, 403, 403)),
    (
        "change a share",
        lambda w, u: (
            "PUT",
            f"{w.path}/share/{w.users['viewer'].username}",
            {"json": {"permission": "edit"}},
        ),
        (200, 403, 403, 403),
    ),
    (
        "remove another's share",
        lambda w, u: ("DELETE", f"{w.path}/share/{_another(w, u).username}", {}),
        (204, 403, 403, 403),
    ),
    (
        "leave (remove own share)",
        lambda w, u: ("DELETE", f"{w.path}/share/{u.username}", {}),
        (404, 204, 204, 403),  # the owner has no share of their own
    ),
]


async def _snapshot(client: httpx.AsyncClient, w: World) -> list[tuple[int, bytes, str | None]]:
    """Everything the owner sees of the task: its bytes and ETag, files, comments, shares."""
    owner = w.users["owner"].headers
    seen = []
    for suffix in ("", "/files", "/comments", "/shares"):
        response = await client.get(w.path + suffix, headers=owner)
        seen.append((response.status_code, response.content, response.headers.get("etag")))
    return seen


@pytest.mark.parametrize("role_index", range(len(ROLES)), ids=ROLES)
@pytest.mark.parametrize(("name", "request_for", "statuses"), ROUTES, ids=[r[0] for r in ROUTES])
async def test_permission_matrix(
    client: httpx.AsyncClient,
    name: str,
    request_for: Request,
    statuses: tuple[int, ...],
    role_index: int,
) -> None:
    world = await _world(client)
    caller = world.users[ROLES[role_index]]
    method, url, kwargs = request_for(world, caller)
    before = await _snapshot(client, world)
    if method == "UPLOAD":
        response = await upload(client, world.task["id"], "m.txt", TEXT, headers=caller.headers)
    else:
        response = await client.request(method, url, headers=caller.headers, **kwargs)
    expected = statuses[role_index]
    if expected >= 400:
        body = assert_error(response, expected)
        assert "matrix" not in response.text  # never the task's data
        assert body.get("task_id", world.task["id"]) == world.task["id"]
        assert await _snapshot(client, world) == before, name
    else:
        assert response.status_code == expected, (name, ROLES[role_index], response.text)
