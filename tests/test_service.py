"""Root, health, version, error shapes, request ids, logging and database outages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from tests.conftest import PASSWORD, assert_error, client_for, make_task, make_user

DEAD_DATABASE = "postgresql://nobody@127.0.0.1:9/none"  # port 9 (discard): nothing listens


async def test_root_says_running(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.json() == {"message": "Task Manager API", "status": "running"}


async def test_health_reports_database_and_cache(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["cache"] in {"ok", "memory"}
    assert response.headers["cache-control"] == "no-store"


async def test_version_reports_release(client: httpx.AsyncClient) -> None:
    response = await client.get("/version")
    assert response.status_code == 200
    assert response.json()["version"] == "1.0.0"


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/tasks/{task_id}" in schema["paths"]
    assert (
        schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"][
            "tokenUrl"
        ]
        == "/auth/token"
    )


async def test_unknown_route_and_wrong_method_use_the_standard_body(
    client: httpx.AsyncClient,
) -> None:
    assert_error(await client.get("/nope"), 404)
    assert_error(await client.put("/tasks"), 405)


async def test_every_response_has_request_id_and_nosniff(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/"), await client.get("/nope")):
        assert len(response.headers["x-request-id"]) == 32
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_valid_incoming_request_id_is_echoed_and_bad_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    good = await client.get("/", headers={"X-Request-ID": "abc-123"})
    assert good.headers["x-request-id"] == "abc-123"
    bad = await client.get("/", headers={"X-Request-ID": "evil\tvalue<script>"})
    assert bad.headers["x-request-id"] != "evil\tvalue<script>"


async def test_unexpected_error_gives_generic_500_body(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory() as app:
        assert isinstance(app, FastAPI)

        async def boom() -> None:
            raise RuntimeError("secret internals")

        app.add_api_route("/boom", boom)
        async with client_for(app) as client:
            response = await client.get("/boom")
    body = assert_error(response, 500)
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert body["error"] == "Internal Server Error"
    assert response.headers["x-request-id"]


async def test_deadlock_or_serialization_failure_is_a_409_to_retry(
    app_factory: Callable[..., Any],
) -> None:
    class Clash(Exception):
        sqlstate = "40P01"  # what asyncpg reports for "deadlock detected"

    async with app_factory() as app:
        assert isinstance(app, FastAPI)

        async def clash() -> None:
            raise DBAPIError("UPDATE tasks ...", {}, Clash("deadlock detected"))

        app.add_api_route("/clash", clash)
        async with client_for(app) as client:
            response = await client.get("/clash")
    body = assert_error(response, 409)
    assert "retry" in body["message"]


async def test_database_down_gives_503_on_health_and_endpoints(
    app_factory: Callable[..., Any],
) -> None:
    dead = app_factory(database_url=DEAD_DATABASE, db_connect_timeout=1)
    async with dead as app, client_for(app) as client:
        health = await client.get("/health")
        register = await client.post(
            "/auth/register",
            json={"username": "nobody1", "email": "n@example.com", "password": PASSWORD},
        )
        login = await client.post("/auth/login", json={"username": "x", "password": "y"})
    assert health.status_code == 503
    assert health.json()["database"] == "unavailable"
    for response in (register, login):
        body = assert_error(response, 503)
        assert "Traceback" not in response.text
        assert body["error"] == "Service Unavailable"


async def test_access_log_has_one_line_per_request_without_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        user = await make_user(client)
        await make_task(client, user, title="log me")
        await client.get("/tasks", headers=user.headers)
    access = [r for r in caplog.records if r.name == "access"]
    assert [(r.method, r.path, r.status) for r in access] == [  # type: ignore[attr-defined]
        ("POST", "/auth/register", 201),
        ("POST", "/auth/login", 200),
        ("POST", "/tasks", 201),
        ("GET", "/tasks", 200),
    ]
    assert all(isinstance(r.duration_ms, float) for r in access)  # type: ignore[attr-defined]
    text = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    token = user.headers["Authorization"].split()[1]
    for secret in (PASSWORD, token, user.email):
        assert secret not in text
