"""Accounts: case-insensitive names, argon2id with the bcrypt upgrade, the profile, password
changes and account deletion (blobs included)."""

from __future__ import annotations

from typing import Any

import bcrypt
import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from db_models import User
from tests.conftest import PASSWORD, assert_error, client_for, make_task, make_user, unique_name
from tests.file_helpers import blob_keys, upload
from tests.jobs_helpers import settled


def _bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def _login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def _stored_hash(app: FastAPI, user_id: int) -> str:
    async with app.state.sessionmaker() as session:
        hashed: str = await session.scalar(select(User.hashed_password).where(User.id == user_id))
        return hashed


async def test_usernames_are_unique_regardless_of_case_and_shown_as_registered(
    client: httpx.AsyncClient,
) -> None:
    name = "Ab" + unique_name()
    user = await make_user(client, username=name)
    clash = await client.post(
        "/auth/register",
        json={"username": name.lower(), "email": f"other.{name}@example.com", "password": PASSWORD},
    )
    assert_error(clash, 409, field="username")
    for spelled in (name.lower(), name.upper(), name):
        response = await _login(client, spelled)
        assert response.status_code == 200, spelled
    me = await client.get("/users/me", headers=user.headers)
    assert me.json()["username"] == name


async def test_bcrypt_hash_is_upgraded_to_argon2id_at_the_next_login(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await make_user(client)
    old = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.id == user.id).values(hashed_password=old))
        await session.commit()
    assert_error(await _login(client, user.username, "wrong-password"), 401)
    assert await _stored_hash(app, user.id) == old  # a failed login changes nothing
    assert (await _login(client, user.username)).status_code == 200
    upgraded = await _stored_hash(app, user.id)
    assert upgraded.startswith("$argon2id$")
    assert (await _login(client, user.username)).status_code == 200
    assert await _stored_hash(app, user.id) == upgraded  # already current: not re-hashed


async def test_profile_shows_the_account_and_email_changes_unverify(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    me = await client.get("/users/me", headers=user.headers)
    assert me.status_code == 200
    assert me.json() == {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "email_verified": False,
        "created_at": me.json()["created_at"],
    }
    new_email = f"New.{user.username}@Example.org"
    changed = await client.patch("/users/me", json={"email": new_email}, headers=user.headers)
    assert changed.status_code == 200
    assert changed.json()["email"] == new_email.lower()
    assert changed.json()["email_verified"] is False


async def test_profile_email_taken_in_any_case_is_409(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    taken = await client.patch(
        "/users/me", json={"email": bob.email.upper()}, headers=alice.headers
    )
    assert_error(taken, 409, field="email")
    assert_error(await client.patch("/users/me", json={"email": "x"}, headers=alice.headers), 422)
    extra = await client.patch(
        "/users/me", json={"email": alice.email, "username": "x"}, headers=alice.headers
    )
    assert_error(extra, 422)


async def test_change_password_ends_the_other_sessions_only(
    client: httpx.AsyncClient, app_factory: Any
) -> None:
    user = await make_user(client)
    other = (await _login(client, user.username)).json()
    wrong = await client.patch(
        "/users/me/change-password",
        json={"current_password": "not-the-one", "new_password": "a-new-password-1"},
        headers=user.headers,
    )
    assert_error(wrong, 400)
    async with app_factory() as second, client_for(second) as elsewhere:
        assert (await elsewhere.get("/tasks", headers=_bearer(other))).status_code == 200
        changed = await client.patch(
            "/users/me/change-password",
            json={"current_password": PASSWORD, "new_password": "a-new-password-1"},
            headers=user.headers,
        )
        assert changed.status_code == 200
        assert_error(await elsewhere.get("/tasks", headers=_bearer(other)), 401)
    assert (await client.get("/tasks", headers=user.headers)).status_code == 200
    assert_error(await _login(client, user.username), 401)
    assert (await _login(client, user.username, "a-new-password-1")).status_code == 200


async def test_new_password_follows_the_registration_rules(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for new in ("short", "x" * 101, "nul\x00-in-the-middle"):
        response = await client.patch(
            "/users/me/change-password",
            json={"current_password": PASSWORD, "new_password": new},
            headers=user.headers,
        )
        assert_error(response, 422)


async def test_delete_account_removes_everything_it_owns_blobs_included(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user, bystander = await make_user(client), await make_user(client)
    task = await make_task(client, user, tags=["a"])
    kept_task = await make_task(client, bystander)
    before = await blob_keys(app)
    uploaded = await upload(client, task["id"], "note.txt", b"hello", headers=user.headers)
    assert uploaded.status_code == 201, uploaded.text
    assert len(await blob_keys(app) - before) == 1

    wrong = await client.request(
        "DELETE", "/users/me", json={"password": "not-the-one"}, headers=user.headers
    )
    assert_error(wrong, 400)
    deleted = await client.request(
        "DELETE", "/users/me", json={"password": PASSWORD}, headers=user.headers
    )
    assert deleted.status_code == 204
    await settled(app)
    assert await blob_keys(app) == before  # the blob went after the commit, by a job
    assert_error(await client.get("/users/me", headers=user.headers), 401)
    assert_error(await _login(client, user.username), 401)
    assert (
        await client.get(f"/tasks/{kept_task['id']}", headers=bystander.headers)
    ).status_code == 200
    assert_error(await client.get(f"/tasks/{task['id']}", headers=bystander.headers), 404)
    again = await client.post(
        "/auth/register",
        json={"username": user.username, "email": user.email, "password": PASSWORD},
    )
    assert again.status_code == 201  # the name and address are free again
