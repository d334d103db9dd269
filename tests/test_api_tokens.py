"""Personal API tokens: shown once, stored hashed, scoped, expiring, revocable at once, and never
able to manage the account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from auth import secret_hash
from db_models import Credential
from tests.conftest import PASSWORD, User, assert_error, client_for, make_task, make_user
from tests.file_helpers import upload

INSUFFICIENT = 'Bearer error="insufficient_scope"'


async def _token(
    client: httpx.AsyncClient, user: User, scopes: list[str], **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/users/me/tokens", json={"name": "script", "scopes": scopes, **extra}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _bearer(created: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {created['token']}"}


def _refused(response: httpx.Response, scope: str | None = None) -> None:
    body = assert_error(response, 403)
    assert response.headers["www-authenticate"] == INSUFFICIENT
    if scope:
        assert body["scope"] == scope


async def test_token_is_shown_once_stored_hashed_and_listed_with_last_use(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await make_user(client)
    created = await _token(client, user, ["tasks:read"], expires_in_days=30)
    assert set(created) == {"id", "name", "scopes", "token", "created_at", "expires_at"}
    assert created["token"].startswith("tm_pat_")
    assert created["scopes"] == ["tasks:read"]
    async with app.state.sessionmaker() as session:
        stored = await session.scalar(
            select(Credential.secret_hash).where(Credential.id == created["id"])
        )
    assert stored == secret_hash(created["token"])
    listed = (await client.get("/users/me/tokens", headers=user.headers)).json()
    assert listed == [
        {
            "id": created["id"], "name": "script", "scopes": ["tasks:read"],
            "created_at": created["created_at"], "expires_at": created["expires_at"],
            "last_used_at": None,
        }
    ]  # fmt: skip
    assert created["token"] not in str(listed)
    assert (await client.get("/tasks", headers=_bearer(created))).status_code == 200
    used = (await client.get("/users/me/tokens", headers=user.headers)).json()
    assert used[0]["last_used_at"] is not None


async def test_read_scope_reads_tasks_and_nothing_else(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    reader = _bearer(await _token(client, user, ["tasks:read"]))
    assert (await client.get("/tasks", headers=reader)).status_code == 200
    assert (await client.get(f"/tasks/{task['id']}", headers=reader)).status_code == 200
    assert (await client.get("/tasks/stats", headers=reader)).status_code == 200
    _refused(await client.post("/tasks", json={"title": "x"}, headers=reader), "tasks:write")
    _refused(await client.patch(f"/tasks/{task['id']}", json={"title": "x"}, headers=reader))
    _refused(await client.delete(f"/tasks/{task['id']}", headers=reader))
    _refused(await client.post(f"/tasks/{task['id']}/tags", json=["a"], headers=reader))
    _refused(
        await client.patch(
            "/tasks/bulk", json={"task_ids": [task["id"]], "updates": {"priority": "low"}},
            headers=reader,
        )
    )  # fmt: skip
    _refused(await client.get(f"/tasks/{task['id']}/files", headers=reader), "files:read")
    unchanged = await client.get(f"/tasks/{task['id']}", headers=user.headers)
    assert unchanged.json()["title"] == task["title"]


async def test_write_scopes_write_and_include_reading(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    writer = _bearer(await _token(client, user, ["tasks:write", "files:write"]))
    created = await client.post("/tasks", json={"title": "by script"}, headers=writer)
    assert created.status_code == 201
    task_id = created.json()["id"]
    assert (await client.get(f"/tasks/{task_id}", headers=writer)).status_code == 200
    uploaded = await upload(client, task_id, "n.txt", b"hi", headers=writer)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    assert (await client.get(f"/files/{file_id}", headers=writer)).content == b"hi"
    assert (await client.delete(f"/files/{file_id}", headers=writer)).status_code == 204
    files_only = _bearer(await _token(client, user, ["files:read"]))
    assert (await client.get(f"/tasks/{task_id}/files", headers=files_only)).status_code == 200
    _refused(await client.get(f"/tasks/{task_id}", headers=files_only), "tasks:read")


ACCOUNT_ROUTES = [
    ("POST", "/users/me/tokens", {"name": "more", "scopes": ["tasks:read"]}),
    ("GET", "/users/me/tokens", None),
    ("DELETE", "/users/me/tokens/1", None),
    ("GET", "/users/me/sessions", None),
    ("DELETE", "/users/me/sessions/1", None),
    ("PATCH", "/users/me/change-password", {"current_password": PASSWORD, "new_password": "x" * 9}),
    ("PATCH", "/users/me", {"email": "stolen@example.com"}),
    ("DELETE", "/users/me", {"password": PASSWORD}),
    ("GET", "/users/me", None),
    ("POST", "/notifications/send-verification", None),
    ("POST", "/auth/logout", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_ROUTES)
async def test_a_personal_token_never_manages_the_account(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    user = await make_user(client)
    every = [
        "tasks:read", "tasks:write", "files:read", "files:write", "shares:write", "webhooks:write"
    ]  # fmt: skip
    token = _bearer(await _token(client, user, every))
    _refused(await client.request(method, path, json=body, headers=token))
    assert (await client.get("/users/me", headers=user.headers)).json()["email"] == user.email


async def test_revoked_token_is_refused_at_once_on_every_instance(
    client: httpx.AsyncClient, app_factory: Any
) -> None:
    user = await make_user(client)
    created = await _token(client, user, ["tasks:read"])
    async with app_factory() as other_app, client_for(other_app) as other:
        assert (await other.get("/tasks", headers=_bearer(created))).status_code == 200
        revoked = await client.delete(f"/users/me/tokens/{created['id']}", headers=user.headers)
        assert revoked.status_code == 204
        for http in (client, other):
            assert_error(await http.get("/tasks", headers=_bearer(created)), 401)
    assert (await client.get("/users/me/tokens", headers=user.headers)).json() == []
    again = await client.delete(f"/users/me/tokens/{created['id']}", headers=user.headers)
    assert_error(again, 404)


async def test_another_users_token_cannot_be_revoked(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    bobs = await _token(client, bob, ["tasks:read"])
    assert_error(await client.delete(f"/users/me/tokens/{bobs['id']}", headers=alice.headers), 404)
    assert (await client.get("/tasks", headers=_bearer(bobs))).status_code == 200


async def test_expired_and_unknown_tokens_are_401(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await make_user(client)
    created = await _token(client, user, ["tasks:read"], expires_in_days=1)
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Credential).where(Credential.id == created["id"]).values(expires_at=past)
        )
        await session.commit()
    assert_error(await client.get("/tasks", headers=_bearer(created)), 401)
    unknown = {"Authorization": "Bearer tm_pat_" + "A" * 43}
    assert_error(await client.get("/tasks", headers=unknown), 401)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["tasks:admin"]},
        {"name": "", "scopes": ["tasks:read"]},
        {"name": "a\x00b", "scopes": ["tasks:read"]},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["tasks:read"], "expires_in_days": 2**31},
        {"name": "x", "scopes": ["tasks:read"], "token": "tm_pat_mine"},
    ],
)
async def test_invalid_token_request_is_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    user = await make_user(client)
    assert_error(await client.post("/users/me/tokens", json=body, headers=user.headers), 422)
