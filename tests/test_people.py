"""Finding people (GET /users/search) and notification preferences."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import assert_error, make_user


async def test_search_finds_usernames_by_prefix_any_case_without_emails(
    client: httpx.AsyncClient,
) -> None:
    stem = f"Srch{uuid.uuid4().hex[:6]}"
    caller = await make_user(client)
    found = [await make_user(client, username=f"{stem}_{name}") for name in ("b", "A", "c")]
    await make_user(client, username=f"x{stem}")  # contains the query, does not start with it
    response = await client.get(
        "/users/search", params={"query": stem.lower()}, headers=caller.headers
    )
    assert response.status_code == 200
    assert response.json() == [
        {"id": user.id, "username": user.username} for user in (found[1], found[0], found[2])
    ]
    assert "@" not in response.text
    limited = await client.get(
        "/users/search", params={"query": stem, "limit": 2}, headers=caller.headers
    )
    assert len(limited.json()) == 2


async def test_search_takes_like_wildcards_literally(client: httpx.AsyncClient) -> None:
    stem = uuid.uuid4().hex[:6]
    caller = await make_user(client)
    await make_user(client, username=f"w{stem}xx")
    underscore = await make_user(client, username=f"w{stem}_x")
    for query, expected in ((f"w{stem}_", [underscore.username]), (f"w{stem}%", [])):
        response = await client.get(
            "/users/search", params={"query": query}, headers=caller.headers
        )
        assert [user["username"] for user in response.json()] == expected


@pytest.mark.parametrize(
    "params", [{"query": "a"}, {}, {"query": "ab", "limit": 51}, {"query": "ab\x00"}]
)
async def test_search_validates_its_query(
    client: httpx.AsyncClient, params: dict[str, str | int]
) -> None:
    caller = await make_user(client)
    assert_error(await client.get("/users/search", params=params, headers=caller.headers), 422)


async def test_search_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/users/search", params={"query": "ab"}), 401)


async def test_preferences_default_on_and_patch_changes_only_what_is_sent(
    client: httpx.AsyncClient,
) -> None:
    user, other = await make_user(client), await make_user(client)
    url = "/notifications/preferences"
    every = ("email_enabled", "task_shared_with_me", "task_completed", "comment_on_my_task")
    assert (await client.get(url, headers=user.headers)).json() == dict.fromkeys(every, True)
    changed = await client.patch(url, json={"task_completed": False}, headers=user.headers)
    assert changed.status_code == 200
    expected = {**dict.fromkeys(every, True), "task_completed": False}
    assert changed.json() == expected
    assert (await client.get(url, headers=user.headers)).json() == expected
    assert (await client.get(url, headers=other.headers)).json() == dict.fromkeys(every, True)
    assert (await client.patch(url, json={}, headers=user.headers)).json() == expected
    assert_error(await client.patch(url, json={"task_completed": None}, headers=user.headers), 422)
    assert_error(await client.patch(url, json={"email_enabled": "no"}, headers=user.headers), 422)
    assert_error(await client.patch(url, json={"sms": True}, headers=user.headers), 422)
