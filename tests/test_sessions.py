"""Sessions: login pairs, refresh rotation and theft detection, logout, the sessions list, and
revocation that reaches every instance of the API at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


async def test_a_token_naming_another_users_session_is_refused(client: httpx.AsyncClient) -> None:
    import jwt

    alice, bob = await make_user(client), await make_user(client)
    bobs = (await client.get("/users/me/sessions", headers=bob.headers)).json()
    claims = jwt.decode(alice.headers["Authorization"][7:], options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "sid": bobs[0]["id"]},
        "test-secret-key-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    assert_error(await client.get("/tasks", headers={"Authorization": f"Bearer {forged}"}), 401)


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
