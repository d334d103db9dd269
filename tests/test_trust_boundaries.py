"""Trust boundaries (issue 11 §6): what the client sends (Host) never comes back, Retry-After only
where it means something, /metrics and the docs under the settings' control.

X-Forwarded-For through a real uvicorn is in tests/test_client_ip_live.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError

from services import tasks as task_service
from settings import Settings
from tests.conftest import assert_error, client_for, make_task, make_user

EVIL = "evil.example"
TOKEN = "metrics-token-for-the-tests"


# --- Retry-After: 429 and 503 only -------------------------------------------------------------


async def test_list_tasks_200_has_rate_limit_headers_but_no_retry_after(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    response = await client.get("/tasks", headers=user.headers)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "1000"
    assert "retry-after" not in response.headers


async def test_limited_404_has_no_retry_after(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.get("/tasks/2147483647", headers=user.headers)
    assert_error(response, 404)
    assert "x-ratelimit-remaining" in response.headers
    assert "retry-after" not in response.headers


async def test_limited_429_has_retry_after(app_factory: Callable[..., Any]) -> None:
    async with app_factory(rate_limit_default="1/minute") as app, client_for(app) as http:
        await http.get("/tasks")
        response = await http.get("/tasks")
    assert_error(response, 429)
    assert 0 < int(response.headers["retry-after"]) <= 61


async def test_limited_503_has_retry_after(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(client)

    async def database_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT FROM tasks", {}, ConnectionError("down"))

    monkeypatch.setattr(task_service, "list_tasks", database_down)
    response = await client.get("/tasks", headers=user.headers)
    assert_error(response, 503)
    assert "x-ratelimit-remaining" in response.headers  # the default limit was checked
    assert int(response.headers["retry-after"]) >= 5


# --- Host never reaches a response ---------------------------------------------------------------


async def test_pagination_links_are_relative_whatever_the_host(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for _ in range(3):
        await make_task(client, user)
    response = await client.get(
        "/tasks?limit=1&skip=1&sort=title", headers={**user.headers, "Host": EVIL}
    )
    targets = re.findall(r"<([^>]*)>", response.headers["link"])
    assert len(targets) == 4
    assert all(t.startswith("/tasks?sort=title&skip=") for t in targets), targets


@pytest.mark.parametrize("path", ["/tasks/", "/tasks/?skip=1", "//evil.example//tasks/"])
async def test_trailing_slash_redirect_location_is_relative(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers={"Host": EVIL})
    if response.status_code in (301, 302, 307, 308):
        location = response.headers["location"]
        assert location.startswith("/")
        assert not location.startswith("//"), location  # not a scheme-relative redirect
    assert EVIL not in str(response.headers).lower() + response.text


_UNDOCUMENTED = ("/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/docs-assets/x.js")
_METHODS = ("get", "post", "put", "patch", "delete")


def _requests(app: FastAPI, task_id: int) -> list[tuple[str, str]]:
    """Every documented operation, its path parameters filled in, the routes outside the schema,
    and each path with a trailing slash (Starlette's redirect)."""
    fill = {"task_id": str(task_id), "file_id": "1", "tag": "x"}
    out: list[tuple[str, str]] = [("GET", path) for path in _UNDOCUMENTED]
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: fill.get(m.group(1), "1"), template)
        out += [(method.upper(), path) for method in operations if method in _METHODS]
        out.append(("GET", path.rstrip("/") + "/"))
    return out


async def test_no_route_reflects_the_host_header(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    requests = _requests(app, task["id"])
    assert len(requests) > 20
    for method, path in requests:
        response = await client.request(
            method, path, headers={**user.headers, "Host": EVIL}, json={}
        )
        assert response.status_code < 500, (method, path, response.text)
        for name, value in response.headers.items():
            assert EVIL not in value.lower(), (method, path, name, value)
        assert EVIL.encode() not in response.content.lower(), (method, path)


# --- /metrics ------------------------------------------------------------------------------------


async def test_metrics_with_a_token_set_needs_the_bearer_token(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory(metrics_token=SecretStr(TOKEN)) as app, client_for(app) as http:
        assert_error(await http.get("/metrics"), 401)
        wrong = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert_error(wrong, 401)
        assert wrong.headers["www-authenticate"] == "Bearer"
        basic = await http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        assert_error(basic, 401)
        right = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert "http_requests_total" in right.text


async def test_metrics_in_production_without_a_token_is_404(
    app_factory: Callable[..., Any],
) -> None:
    async with app_factory(environment="production") as app, client_for(app) as http:
        assert_error(await http.get("/metrics"), 404, error="Not Found")


async def test_metrics_in_production_with_a_token_is_served_to_its_holder(
    app_factory: Callable[..., Any],
) -> None:
    overrides = {"environment": "production", "metrics_token": SecretStr(TOKEN)}
    async with app_factory(**overrides) as app, client_for(app) as http:
        assert_error(await http.get("/metrics"), 401)
        right = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200


# --- /docs, /redoc, /openapi.json ----------------------------------------------------------------

_DOCS = ("/docs", "/redoc", "/openapi.json")


def test_docs_are_served_by_default_outside_production_only() -> None:
    assert Settings(_env_file=None).docs_enabled is None
    assert Settings(_env_file=None).serves_docs
    production = Settings(_env_file=None, environment="production", secret_key=SecretStr("k" * 32))
    assert not production.serves_docs
    assert Settings(
        _env_file=None, environment="production", secret_key=SecretStr("k" * 32), docs_enabled=True
    ).serves_docs


async def test_production_serves_no_docs_by_default(app_factory: Callable[..., Any]) -> None:
    async with app_factory(environment="production") as app, client_for(app) as http:
        for path in _DOCS:
            assert_error(await http.get(path), 404)
        assert (await http.get("/health")).status_code == 200  # health checks unaffected


async def test_docs_enabled_in_production_serves_them(app_factory: Callable[..., Any]) -> None:
    overrides = {"environment": "production", "docs_enabled": True}
    async with app_factory(**overrides) as app, client_for(app) as http:
        for path in _DOCS:
            assert (await http.get(path)).status_code == 200, path


async def test_docs_disabled_outside_production(app_factory: Callable[..., Any]) -> None:
    async with app_factory(docs_enabled=False) as app, client_for(app) as http:
        for path in _DOCS:
            assert_error(await http.get(path), 404)
