"""Sessions: login pairs, refresh rotation and theft detection, logout, the sessions list, and
revocation that reaches every instance of the API at once."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from db_models import User as DbUser
from tests.conftest import PASSWORD, assert_error, client_for, make_task, make_user


def _bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def _login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def test_login_and_token_answer_a_pair_each_starting_a_session(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    pair = await _login(client, user.username)
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 30 * 60
    form = await client.post("/auth/token", data={"username": user.username, "password": PASSWORD})
    assert form.status_code == 200
    assert set(form.json()) == set(pair)
    sessions = (await client.get("/users/me/sessions", headers=_bearer(pair))).json()
    assert len(sessions) == 3  # make_user's login, this one and the form's
    assert [s["current"] for s in sessions] == [False, True, False]
    assert {"id", "created_at", "last_used_at", "user_agent", "current"} == set(sessions[0])


async def test_refresh_rotates_the_pair_and_spends_the_old_token(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    first = await _login(client, user.username)
    second = (await _refresh(client, first["refresh_token"])).json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/tasks", headers=_bearer(second))).status_code == 200
    third = await _refresh(client, second["refresh_token"])
    assert third.status_code == 200
    assert (await client.get("/tasks", headers=_bearer(third.json()))).status_code == 200


async def test_stolen_refresh_token_replayed_after_rotation_ends_the_session(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    stolen = await _login(client, user.username)
    rotated = (await _refresh(client, stolen["refresh_token"])).json()  # the owner refreshes
    replay = await _refresh(client, stolen["refresh_token"])  # the thief replays the old one
    assert_error(replay, 401)
    assert replay.headers["www-authenticate"] == "Bearer"
    # The whole session is gone: the rotated pair is dead too, access token and refresh token.
    assert_error(await client.get("/tasks", headers=_bearer(rotated)), 401)
    assert_error(await _refresh(client, rotated["refresh_token"]), 401)
    # Other sessions of the user are not touched.
    assert (await client.get("/tasks", headers=user.headers)).status_code == 200


async def test_racing_refreshes_of_one_token_give_exactly_one_pair(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    user = await make_user(client)
    pair = await _login(client, user.username)
    answers = await asyncio.gather(*(_refresh(client, pair["refresh_token"]) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=st.one_of(st.text(max_size=300), st.integers(), st.none(), st.lists(st.text())))
async def test_refresh_with_any_value_is_401_or_422_never_500(
    client: httpx.AsyncClient, token: Any
) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": token})
    assert response.status_code in (401, 422), response.text


async def test_logout_ends_the_session_at_once_on_every_instance(
    client: httpx.AsyncClient, app_factory: Any
) -> None:
    user = await make_user(client)
    pair = await _login(client, user.username)
    task = await make_task(client, user)
    async with app_factory() as other_app, client_for(other_app) as other:
        assert (await other.get(f"/tasks/{task['id']}", headers=_bearer(pair))).status_code == 200
        logout = await client.post("/auth/logout", headers=_bearer(pair))
        assert logout.status_code == 204
        for http in (client, other):  # both instances had verified (and cached) the token
            assert_error(await http.get(f"/tasks/{task['id']}", headers=_bearer(pair)), 401)
            assert_error(await http.get("/tasks", headers=_bearer(pair)), 401)
            assert_error(await http.get("/tasks/stats", headers=_bearer(pair)), 401)
            assert_error(
                await http.patch(
                    f"/tasks/{task['id']}", json={"title": "x"}, headers=_bearer(pair)
                ),
                401,
            )
            assert_error(await http.post("/tasks", json={"title": "x"}, headers=_bearer(pair)), 401)
            assert_error(await http.delete(f"/tasks/{task['id']}", headers=_bearer(pair)), 401)
            assert_error(await http.get(f"/tasks/{task['id']}/files", headers=_bearer(pair)), 401)
            assert_error(await http.get("/users/me", headers=_bearer(pair)), 401)
        assert_error(await _refresh(client, pair["refresh_token"]), 401)
        assert_error(await client.post("/auth/logout", headers=_bearer(pair)), 401)
    # The user's other session still works, and the task was not touched.
    still = await client.get(f"/tasks/{task['id']}", headers=user.headers)
    assert still.status_code == 200
    assert still.json()["title"] == task["title"]


async def test_deleting_a_session_from_the_list_ends_it_at_once(
    client: httpx.AsyncClient, app_factory: Any
) -> None:
    user = await make_user(client)
    laptop = await _login(client, user.username)
    sessions = (await client.get("/users/me/sessions", headers=user.headers)).json()
    laptop_id = next(s["id"] for s in sessions if not s["current"])
    async with app_factory() as other_app, client_for(other_app) as other:
        assert (await other.get("/tasks", headers=_bearer(laptop))).status_code == 200
        ended = await client.delete(f"/users/me/sessions/{laptop_id}", headers=user.headers)
        assert ended.status_code == 204
        assert_error(await other.get("/tasks", headers=_bearer(laptop)), 401)
    assert_error(await client.get("/tasks", headers=_bearer(laptop)), 401)
    assert_error(await _refresh(client, laptop["refresh_token"]), 401)
    again = await client.delete(f"/users/me/sessions/{laptop_id}", headers=user.headers)
    assert_error(again, 404, id=laptop_id)
    remaining = (await client.get("/users/me/sessions", headers=user.headers)).json()
    assert [s["current"] for s in remaining] == [True]


async def test_another_users_session_cannot_be_ended_or_seen(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    bobs = (await client.get("/users/me/sessions", headers=bob.headers)).json()
    response = await client.delete(f"/users/me/sessions/{bobs[0]['id']}", headers=alice.headers)
    assert_error(response, 404)
    assert (await client.get("/tasks", headers=bob.headers)).status_code == 200
    mine = (await client.get("/users/me/sessions", headers=alice.headers)).json()
    assert bobs[0]["id"] not in {s["id"] for s in mine}


@pytest.mark.parametrize("session_id", ["0", "-1", "2147483648", "abc"])
async def test_session_id_out_of_range_is_422(client: httpx.AsyncClient, session_id: str) -> None:
    user = await make_user(client)
    assert_error(await client.delete(f"/users/me/sessions/{session_id}", headers=user.headers), 422)


async def test_idempotent_replay_after_logout_is_401_not_the_stored_answer(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    pair = await _login(client, user.username)
    headers = {**_bearer(pair), "Idempotency-Key": "create-once"}
    first = await client.post("/tasks", json={"title": "once"}, headers=headers)
    assert first.status_code == 201
    replayed = await client.post("/tasks", json={"title": "once"}, headers=headers)
    assert replayed.status_code == 201
    assert replayed.headers["idempotent-replayed"] == "true"
    assert (await client.post("/auth/logout", headers=_bearer(pair))).status_code == 204
    assert_error(await client.post("/tasks", json={"title": "once"}, headers=headers), 401)


async def _revoked_list(app: FastAPI, user_id: int) -> str:
    async with app.state.sessionmaker() as session:
        listed = await session.scalar(
            select(DbUser.revoked_credentials).where(DbUser.id == user_id)
        )
    assert listed is not None
    return str(listed)


async def _set_revoked_list(app: FastAPI, user_id: int, listed: str) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(DbUser).where(DbUser.id == user_id).values(revoked_credentials=listed)
        )
        await session.commit()


async def _current_session(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    sessions = (await client.get("/users/me/sessions", headers=headers)).json()
    return int(next(s["id"] for s in sessions if s["current"]))


async def test_only_the_credentials_own_entry_on_the_revoked_list_refuses_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The list is matched by `,<id>@`: ids that contain the caller's id (12 in 112, 120, 1212)
    never refuse it, in any combination; its own entry does, on the next request."""
    user = await make_user(client)
    session_id = await _current_session(client, user.headers)
    user_id = (await client.get("/users/me", headers=user.headers)).json()["id"]
    forget_at = int(time.time()) + 3600
    shapes = ("{id}0", "1{id}", "{id}{id}", "0{id}", "9{id}9")
    for size in range(1, len(shapes) + 1):
        for chosen in itertools.combinations(shapes, size):
            others = ",".join(f"{shape.format(id=session_id)}@{forget_at}" for shape in chosen)
            await _set_revoked_list(app, user_id, f",{others},")
            assert (await client.get("/tasks", headers=user.headers)).status_code == 200, chosen
    await _set_revoked_list(app, user_id, f",{session_id}0@{forget_at},{session_id}@{forget_at},")
    assert_error(await client.get("/tasks", headers=user.headers), 401)


async def test_revoking_lists_the_ids_and_forgets_entries_past_their_time(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await make_user(client)
    user_id = (await client.get("/users/me", headers=user.headers)).json()["id"]
    phone = await _login(client, user.username)
    phone_id = await _current_session(client, _bearer(phone))
    now = int(time.time())
    await _set_revoked_list(app, user_id, f",999999@{now - 1},999998@{now + 3600},")
    assert (await client.post("/auth/logout", headers=_bearer(phone))).status_code == 204
    entries = dict(e.split("@") for e in (await _revoked_list(app, user_id)).strip(",").split(","))
    # The stale entry is gone, the live one kept, the logged-out session listed until every
    # access token it was issued has expired (30 minutes in the tests' settings, plus a minute).
    assert set(entries) == {"999998", str(phone_id)}
    assert now + 30 * 60 < int(entries[str(phone_id)]) <= int(time.time()) + 31 * 60
    assert (await client.get("/tasks", headers=user.headers)).status_code == 200
    assert_error(await client.get("/tasks", headers=_bearer(phone)), 401)
