"""Test harness: the real app over HTTP (httpx ASGI transport) against a real database.

The database comes from TEST_DATABASE_URL (default: a fresh SQLite file) and is built once per run
with `alembic upgrade head`, which also tests the migrations. Redis is used when TEST_REDIS_URL is
set. Tests never share rows: every test registers users of its own, and every test client has its
own client IP, so rate-limit buckets are never shared between tests either.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.config import Config
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import Scope

import metrics
import request_context
from alembic import command
from db_config import normalize_database_url
from main import create_app
from rate_limit_config import configure_limiter
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# (method, route template, status) of every answer an in-process app gave in this run: the last
# test (tests/test_schema_statuses.py) checks each against the route's documented responses.
ANSWERED: set[tuple[str, str, int]] = set()
LAST_TEST = "test_every_status_answered_in_this_run_is_documented"
PASSWORD = "correct-horse-battery"
_ip_counter = itertools.count(1)
_name_counter = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check of every answer seen runs after every other test."""
    items.sort(key=lambda item: item.name == LAST_TEST)


@pytest.fixture(scope="session", autouse=True)
def _record_answers() -> Iterator[None]:
    """Record each answer at the pipeline's one exit (where the metrics count it)."""
    observe = metrics.observe_request  # what request_context imported

    def recording(scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        if getattr(route, "include_in_schema", False):
            ANSWERED.add((scope["method"], route.path_format, status))  # type: ignore[union-attr]
        observe(scope, status, seconds)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(request_context, "observe_request", recording)
        yield


def migrate(database_url: str, revision: str = "head", *, down: bool = False) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    if down:
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)


def admin_sql(url: str, sql: str, *, database: str = "postgres") -> None:
    """Run `sql` as the user of `url` (PostgreSQL), connected to `database`."""

    async def run() -> None:
        target = normalize_database_url(url)
        connection = await asyncpg.connect(
            user=target.username, password=target.password, host=target.host,
            port=target.port or 5432, database=database,
        )  # fmt: skip
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A brand-new database of the kind the suite runs on."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"tm_migrations_{uuid.uuid4().hex[:8]}"
    admin_sql(base, f'CREATE DATABASE "{name}"')
    try:
        yield normalize_database_url(base).set(database=name).render_as_string(False)
    finally:
        admin_sql(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    )
    migrate(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return os.environ.get("TEST_REDIS_URL") or None


@pytest.fixture(scope="session")
def base_settings(
    database_url: str, redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-for-hs256"),
        secret_key_file=tmp_path_factory.mktemp("secret") / "key",
        upload_dir=tmp_path_factory.mktemp("uploads"),
        database_url=database_url,
        redis_url=redis_url,
        # Per-run prefix: reruns and parallel runs never see each other's counters or cache.
        redis_key_prefix=f"tmtest:{uuid.uuid4().hex[:8]}:",
        argon2_time_cost=1,  # cheap hashes for speed; the production defaults: test_settings.py
        argon2_memory_kib=64,
        log_level="WARNING",
        gc_tuning=False,  # tests build hundreds of apps in one process; test_settings covers it
    )


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="session")
async def app(base_settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(base_settings) as application:
        yield application


def fresh_ip() -> str:
    n = next(_ip_counter)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def client_for(app: FastAPI, ip: str | None = None) -> httpx.AsyncClient:
    """An HTTP client for `app` that appears to come from its own IP address."""
    transport = httpx.ASGITransport(app=app, client=(ip or fresh_ip(), 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture
def app_factory(base_settings: Settings) -> Iterator[Callable[..., Any]]:
    """Build extra apps with overridden settings; the shared limiter is restored afterwards."""

    def factory(**overrides: Any) -> Any:
        return running_app(base_settings.model_copy(update=overrides))

    yield factory
    configure_limiter(base_settings)


@pytest.fixture
def worker_app_factory(
    base_settings: Settings, empty_database: str
) -> Iterator[Callable[..., Any]]:
    """Apps over a database of their own, migrated, whose in-process job worker (and relay) is
    theirs alone: jobs run with these apps' settings (SMTP, webhooks), and no other test's
    events reach them."""
    migrate(empty_database)

    def factory(**overrides: Any) -> Any:
        settings = {"database_url": empty_database, "job_worker_in_process": True}
        return running_app(base_settings.model_copy(update=settings | overrides))

    yield factory
    configure_limiter(base_settings)


# --- factories ----------------------------------------------------------------------------------


@dataclass
class User:
    id: int
    username: str
    email: str
    password: str
    headers: dict[str, str]


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_name_counter)}_{uuid.uuid4().hex[:8]}"


async def make_user(client: httpx.AsyncClient, **overrides: str) -> User:
    username = overrides.get("username", unique_name())
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    body.update(overrides)
    registered = await client.post("/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    login = await client.post(
        "/auth/login", json={"username": body["username"], "password": body["password"]}
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return User(registered.json()["id"], body["username"], body["email"], body["password"], headers)


async def make_task(client: httpx.AsyncClient, user: User, **fields: Any) -> dict[str, Any]:
    body = {"title": fields.pop("title", "A task"), **fields}
    response = await client.post("/tasks", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def assert_error(response: httpx.Response, status: int, **expected: Any) -> dict[str, Any]:
    """Assert the status and the standard error body; return the body for further checks."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("message"), str), body
    assert body["error"], body
    assert body["message"], body
    for key, value in expected.items():
        assert body.get(key) == value, (key, body)
    assert response.headers.get("cache-control") == "no-store"
    return body
