"""Registration, login and token checks."""

from __future__ import annotations

import asyncio
import time
import warnings
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from tests.conftest import PASSWORD, assert_error, make_user, unique_name

SECRET = "test-secret-key-that-is-long-enough-for-hs256"


def _registration(**overrides: str) -> dict[str, str]:
    name = unique_name()
    return {"username": name, "email": f"{name}@example.com", "password": PASSWORD, **overrides}


async def test_register_valid_body_returns_201_without_password(client: httpx.AsyncClient) -> None:
    body = _registration()
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 201
    user = response.json()
    assert set(user) == {"id", "username", "email", "created_at"}
    assert user["username"] == body["username"]
    assert user["email"] == body["email"]
    assert "password" not in response.text
    assert "$2b$" not in response.text


async def test_register_duplicate_username_returns_409_naming_field(
    client: httpx.AsyncClient,
) -> None:
    first = _registration()
    assert (await client.post("/auth/register", json=first)).status_code == 201
    again = _registration(username=first["username"])
    assert_error(await client.post("/auth/register", json=again), 409, field="username")


async def test_register_duplicate_email_any_case_returns_409_naming_field(
    client: httpx.AsyncClient,
) -> None:
    first = _registration()
    assert (await client.post("/auth/register", json=first)).status_code == 201
    again = _registration(email=first["email"].upper())
    assert_error(await client.post("/auth/register", json=again), 409, field="email")


@pytest.mark.parametrize(
    "overrides",
    [
        {"username": "ab"},
        {"username": "x" * 51},
        {"username": "has space"},
        {"email": "not-an-email"},
        {"password": "short"},
        {"password": "x" * 101},
        {"password": "\x00" * 8},
    ],
)
async def test_register_invalid_field_returns_422(
    client: httpx.AsyncClient, overrides: dict[str, str]
) -> None:
    body = assert_error(await client.post("/auth/register", json=_registration(**overrides)), 422)
    assert body["detail"], body
    if len(overrides.get("password", "")) > 20:
        assert overrides["password"] not in str(body)  # rejected input is not echoed


async def test_register_long_multibyte_password_is_accepted(client: httpx.AsyncClient) -> None:
    # 100 characters, 400 bytes in UTF-8: no 72-byte rule any more.
    assert (
        await client.post("/auth/register", json=_registration(password="😀" * 100))
    ).status_code == 201


async def test_register_missing_or_extra_fields_returns_422(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/auth/register", json={"username": "abc"}), 422)
    assert_error(await client.post("/auth/register", json=_registration(id="7")), 422)
    assert_error(await client.post("/auth/register", content=b"{not json"), 422)


async def test_register_concurrently_same_username_gives_one_201_rest_409(
    client: httpx.AsyncClient,
) -> None:
    body = _registration()
    responses = await asyncio.gather(
        *(
            client.post("/auth/register", json={**body, "email": f"{i}{body['email']}"})
            for i in range(8)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, [r.text for r in responses]


async def test_login_valid_credentials_returns_bearer_token(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.post(
        "/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer"
    claims = jwt.decode(token["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user.id)
    assert claims["exp"] > time.time()


async def test_login_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    wrong = await client.post(
        "/auth/login", json={"username": user.username, "password": "nope-nope"}
    )
    unknown = await client.post(
        "/auth/login", json={"username": unique_name(), "password": "nope-nope"}
    )
    for response in (wrong, unknown):
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json()


async def test_login_every_byte_of_a_long_password_counts(client: httpx.AsyncClient) -> None:
    # bcrypt would have compared the first 72 bytes only: these two differ at byte 99.
    user = await make_user(client, password="p" * 99 + "a")
    response = await client.post(
        "/auth/login", json={"username": user.username, "password": "p" * 99 + "b"}
    )
    assert_error(response, 401)
    right = await client.post(
        "/auth/login", json={"username": user.username, "password": "p" * 99 + "a"}
    )
    assert right.status_code == 200


async def test_token_endpoint_accepts_oauth2_form(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.post(
        "/auth/token", data={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    me = await client.get(
        "/tasks", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
    )
    assert me.status_code == 200


async def test_token_endpoint_wrong_password_returns_401(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.post("/auth/token", data={"username": user.username, "password": "x"})
    assert_error(response, 401)


def _token(key: str = SECRET, **claims: object) -> str:
    now = datetime.now(UTC)
    payload = {"sub": "1", "sid": 1, "iat": now, "exp": now + timedelta(minutes=5), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


def _hs512_token() -> str:
    # Right key, wrong algorithm: only HS256 is accepted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode({"sub": "1", "exp": 9999999999, "iat": 1}, SECRET, algorithm="HS512")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        f"Bearer {_token(exp=datetime.now(UTC) - timedelta(seconds=5))}",
        f"Bearer {_token(exp=None)}",
        f"Bearer {_token(sub=None)}",
        f"Bearer {_token(sub='not-a-number')}",
        f"Bearer {_token(sub='999999999')}",
        f"Bearer {_token(sid=None)}",  # a token from before sessions
        f"Bearer {_token(sid='x')}",
        f"Bearer {_token(sid=True)}",
        f"Bearer {_token(sid=2**40)}",
        f"Bearer {_token(key='another-key-of-sufficient-length-000000')}",
        f"Bearer {_hs512_token()}",
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.",
        "Bearer " + "a" * 16_000,
    ],
)
async def test_protected_route_bad_token_returns_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/tasks", headers=headers)
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
