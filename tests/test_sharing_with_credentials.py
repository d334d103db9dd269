"""Sharing, comments and people under the account rules: a revoked session or personal token is
refused on every collaboration route at once, a personal token reaches them only through its
scopes, and a username names its user in any case."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, User, assert_error, make_task, make_user

INSUFFICIENT = 'Bearer error="insufficient_scope"'


async def _session(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    """A second login of `user`: its own session, its own access token."""
    response = await client.post(
        "/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _token(client: httpx.AsyncClient, user: User, scopes: list[str]) -> dict[str, str]:
    response = await client.post(
        "/users/me/tokens", json={"name": "script", "scopes": scopes}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def _shared_task(client: httpx.AsyncClient) -> tuple[User, User, dict[str, Any]]:
    """An owner's task shared with a viewer, with one comment by the viewer."""
    owner, viewer = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    shared = await client.post(
        f"/tasks/{task['id']}/share",
        json={"shared_with_username": viewer.username, "permission": "view"},
        headers=owner.headers,
    )
    assert shared.status_code == 201, shared.text
    comment = await client.post(
        f"/tasks/{task['id']}/comments", json={"content": "hello"}, headers=viewer.headers
    )
    assert comment.status_code == 201, comment.text
    return owner, viewer, {**task, "comment_id": comment.json()["id"]}


def _collaboration_requests(task: dict[str, Any], owner: User) -> list[tuple[str, str, Any]]:
    """(method, url, json) for every collaboration route a recipient may use."""
    comment = f"/comments/{task['comment_id']}"
    return [
        ("GET", f"/tasks/{task['id']}/comments", None),
        ("POST", f"/tasks/{task['id']}/comments", {"content": "more"}),
        ("PATCH", comment, {"content": "edited"}),
        ("GET", "/tasks/shared-with-me", None),
        ("GET", f"/users/search?query={owner.username[:4]}", None),
        ("GET", "/notifications/preferences", None),
        ("PATCH", "/notifications/preferences", {"task_completed": False}),
        ("DELETE", f"/tasks/{task['id']}/share/{task['viewer']}", None),
        ("DELETE", comment, None),
    ]


async def test_a_logged_out_session_is_refused_on_every_collaboration_route(
    client: httpx.AsyncClient,
) -> None:
    owner, viewer, task = await _shared_task(client)
    headers = await _session(client, viewer)
    assert (await client.get("/tasks/shared-with-me", headers=headers)).status_code == 200
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    for method, url, body in _collaboration_requests({**task, "viewer": viewer.username}, owner):
        response = await client.request(method, url, json=body, headers=headers)
        assert_error(response, 401)
    # Nothing those requests asked for happened: the comment and the share are still there.
    comments = await client.get(f"/tasks/{task['id']}/comments", headers=owner.headers)
    assert [c["content"] for c in comments.json()] == ["hello"]
    shares = await client.get(f"/tasks/{task['id']}/shares", headers=owner.headers)
    assert [s["shared_with"]["username"] for s in shares.json()] == [viewer.username]


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        (["tasks:read"], {"GET /comments", "GET /shared-with-me"}),
        (
            ["tasks:write"],
            {"GET /comments", "GET /shared-with-me", "POST /comments", "PATCH /comment"},
        ),
        (["shares:write"], {"GET /search"}),
    ],
    ids=["tasks-read", "tasks-write", "shares-write"],
)
async def test_a_personal_token_reaches_collaboration_routes_through_its_scopes(
    client: httpx.AsyncClient, scopes: list[str], allowed: set[str]
) -> None:
    owner, viewer, task = await _shared_task(client)
    headers = await _token(client, viewer, scopes)
    cases = {
        "GET /comments": ("GET", f"/tasks/{task['id']}/comments", None),
        "POST /comments": ("POST", f"/tasks/{task['id']}/comments", {"content": "x"}),
        "PATCH /comment": ("PATCH", f"/comments/{task['comment_id']}", {"content": "y"}),
        "GET /shared-with-me": ("GET", "/tasks/shared-with-me", None),
        "GET /search": ("GET", f"/users/search?query={owner.username[:4]}", None),
        "GET /preferences": ("GET", "/notifications/preferences", None),
    }
    for name, (method, url, body) in cases.items():
        response = await client.request(method, url, json=body, headers=headers)
        if name in allowed:
            assert response.status_code in (200, 201), (name, response.text)
        else:
            assert_error(response, 403)
            assert response.headers["www-authenticate"] == INSUFFICIENT, name


async def test_a_share_names_its_recipient_in_any_case(client: httpx.AsyncClient) -> None:
    owner, recipient = await make_user(client), await make_user(client)
    task = await make_task(client, owner)
    shared = await client.post(
        f"/tasks/{task['id']}/share",
        json={"shared_with_username": recipient.username.upper(), "permission": "edit"},
        headers=owner.headers,
    )
    assert shared.status_code == 201, shared.text
    assert shared.json()["shared_with"]["username"] == recipient.username  # as registered
    changed = await client.put(
        f"/tasks/{task['id']}/share/{recipient.username.upper()}",
        json={"permission": "view"},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.text
    again = await client.post(
        f"/tasks/{task['id']}/share",
        json={"shared_with_username": recipient.username, "permission": "view"},
        headers=owner.headers,
    )
    assert_error(again, 409)
