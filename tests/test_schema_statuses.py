"""The schema documents every status a route answers (STYLE C21).

Two halves. A walk generated from the app's own schema provokes, on every operation, the error
paths every route shares (no token, a database that is down, a spent rate limit, an oversized or
malformed body) and asserts each answer is one the operation documents. And the last test of the
run checks every (method, route, status) any in-process test provoked (conftest.ANSWERED) against
the operation's documented responses: a status answered anywhere in the suite but missing from
the schema fails it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from auth import create_access_token
from tests.conftest import ANSWERED, LAST_TEST, client_for, make_user

# Nothing answers on port 9 (discard): every query fails at once as "unavailable".
DEAD_DATABASE = "postgresql://nobody@127.0.0.1:9/none"
# An unexpected error (tests inject some on purpose) is the generic 500, never a contract.
UNDOCUMENTED_BY_DESIGN = {500}
Operation = tuple[str, str, dict[str, Any]]
_JSON = "application/json"


def operations(app: FastAPI) -> list[Operation]:
    schema = app.openapi()
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


# A valid value for each path parameter that is not an id.
_PATH_VALUES = {"tag": "a-tag", "username": "alice"}


def _url(path: str, operation: dict[str, Any] | None = None) -> str:
    """The path with valid parameters, and each required query parameter's example (so the
    request gets past validation to the error paths under test)."""
    url = re.sub(r"\{(\w+)\}", lambda m: _PATH_VALUES.get(m.group(1), "1"), path)
    query = {
        parameter["name"]: parameter["schema"]["examples"][0]
        for parameter in (operation or {}).get("parameters", [])
        if parameter["in"] == "query" and parameter.get("required")
    }
    return f"{url}?{urlencode(query)}" if query else url


def _example_body(app: FastAPI, operation: dict[str, Any]) -> dict[str, Any]:
    """The request the operation's own example describes (httpx keyword arguments)."""
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        return {"files": {"file": ("note.txt", b"hello\n", "text/plain")}}
    if "application/x-www-form-urlencoded" in content:
        return {"data": {"username": "alice", "password": "correct-horse"}}
    if _JSON not in content:
        return {}
    media = content[_JSON]
    if "examples" in media:
        return {"json": next(iter(media["examples"].values()))["value"]}
    ref = media["schema"]["$ref"].rsplit("/", 1)[-1]
    return {"json": app.openapi()["components"]["schemas"][ref]["examples"][0]}


def _documented(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"]}


@pytest.fixture
async def outage(app_factory: Callable[..., Any]) -> AsyncIterator[tuple[FastAPI, dict[str, str]]]:
    """An app whose database is down and whose default limit is one request per route."""
    async with app_factory(
        database_url=DEAD_DATABASE, db_connect_timeout=1, rate_limit_default="1/hour"
    ) as app:
        token = create_access_token(1, session_id=1, secret=app.state.secret_key, expires_minutes=5)
        yield app, {"Authorization": f"Bearer {token}"}


def test_every_request_body_has_an_example_and_every_parameter_a_description(
    app: FastAPI,
) -> None:
    for method, path, operation in operations(app):
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (method, path, parameter["name"])
        if "requestBody" in operation:
            assert _example_body(app, operation), (method, path)


def test_patch_example_changes_one_field(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    assert len(schemas["TaskUpdate"]["examples"][0]) == 1


async def test_shared_error_paths_of_every_route_are_documented(
    app: FastAPI, outage: tuple[FastAPI, dict[str, str]]
) -> None:
    dead, token = outage
    async with client_for(app) as client, client_for(dead) as down, client_for(app) as scripted:
        pat = await _personal_token(scripted, ["tasks:read"])
        for method, path, operation in operations(app):
            documented = _documented(operation)
            url, body = _url(path, operation), _example_body(app, operation)
            answers: dict[str, httpx.Response] = {}
            answers["no token"] = await client.request(method, url, **body)
            answers["database down"] = await down.request(method, url, headers=token, **body)
            answers["limit spent"] = await down.request(method, url, headers=token, **body)
            # A personal token with one scope: the routes it may not use answer 403 (documented)
            answers["personal token"] = await scripted.request(method, url, headers=pat, **body)
            if answers["personal token"].status_code == 403 and operation.get("security"):
                refused = answers["personal token"].headers.get("www-authenticate", "")
                assert refused in ("", 'Bearer error="insufficient_scope"'), (method, path)
            if "requestBody" in operation:
                answers["too large"] = await client.request(
                    method, url, content=b"{}", headers={**token, "Content-Length": "99999999"}
                )
            if _JSON in operation.get("requestBody", {}).get("content", {}):
                # Not UTF-8 at all (JSON that merely fails to parse is a 422 naming the body).
                answers["malformed"] = await client.request(
                    method, url, content=b'"\xff"', headers={"Content-Type": _JSON}
                )
            for case, response in answers.items():
                assert response.status_code in documented, (method, path, case, response.text)
            expected = {"database down": 503, "limit spent": 429}
            if operation.get("security"):
                expected["no token"] = 401
            for case, status in expected.items():
                if status in documented:
                    assert answers[case].status_code == status, (method, path, case)
            if "too large" in answers:
                assert answers["too large"].status_code == 413, (method, path)
            if "malformed" in answers:
                assert answers["malformed"].status_code == 400, (method, path)


async def _personal_token(client: httpx.AsyncClient, scopes: list[str]) -> dict[str, str]:
    user = await make_user(client)
    created = await client.post(
        "/users/me/tokens", json={"name": "walk", "scopes": scopes}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


def test_every_status_answered_in_this_run_is_documented(app: FastAPI) -> None:
    """Runs last (conftest orders it): every answer any in-process test provoked."""
    assert test_every_status_answered_in_this_run_is_documented.__name__ == LAST_TEST
    documented = {(method, path): _documented(op) for method, path, op in operations(app)}
    assert ANSWERED, "the recorder saw no request"
    missing = sorted(
        (method, path, status)
        for method, path, status in ANSWERED
        if status not in UNDOCUMENTED_BY_DESIGN
        and (method, path) in documented  # HEAD, and routes tests add, are not in the schema
        and status not in documented[(method, path)]
    )
    assert not missing, f"answered but not in the schema: {missing}"
