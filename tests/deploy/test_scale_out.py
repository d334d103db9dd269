"""Two app instances behind nginx sharing one PostgreSQL and one Redis: how the API scales out.

Runs only on the PostgreSQL + Redis run of the suite; the embedded defaults (SQLite, in-process
cache and limiter) are per-instance by design.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from .harness import APP_DIR, Nginx, free_port, nginx_binary, stop_process_group

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
# The Redis database the deploy tests may use; never flushed, keys carry a per-run prefix.
REDIS_DB = 13
LOGIN_LIMIT = 5

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="needs TEST_DATABASE_URL and TEST_REDIS_URL: two instances share PostgreSQL and Redis",
)


def _admin_url(url: URL) -> URL:
    return url.set(drivername="postgresql+asyncpg", database="postgres")


async def _recreate_database(url: URL, *, drop_only: bool = False) -> None:
    engine = create_async_engine(_admin_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            if not drop_only:
                await conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def shared_database() -> Iterator[str]:
    """A database of this test's own, named after the suite's, dropped afterwards."""
    base = make_url(TEST_DATABASE_URL.replace("postgres://", "postgresql://", 1))
    url = base.set(drivername="postgresql", database=f"{base.database}_deploy")
    asyncio.run(_recreate_database(url))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_recreate_database(url, drop_only=True))


@dataclass(frozen=True)
class Cluster:
    instance_a: str
    instance_b: str
    proxy: str


def _instance_env(database_url: str, prefix: str, tmp: Path) -> dict[str, str]:
    redis_url = make_url(TEST_REDIS_URL).set(database=str(REDIS_DB)).render_as_string(False)
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "ENVIRONMENT": "test",
        "SECRET_KEY": f"scale-out-{uuid.uuid4().hex}-shared-by-both",
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        "LOG_LEVEL": "WARNING",
        "UPLOAD_DIR": str(tmp / "uploads"),
    }


def _wait_healthy(url: str, process: subprocess.Popen[bytes], attempts: int = 100) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            pytest.fail(f"instance {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"instance {url} not healthy")


@pytest.fixture(scope="module")
def cluster(shared_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nginx_binary()
    tmp = tmp_path_factory.mktemp("scale-out")
    env = _instance_env(shared_database, f"tm-deploy-{uuid.uuid4().hex[:8]}:", tmp)
    subprocess.run(
        [f"{APP_DIR}/.venv/bin/alembic", "upgrade", "head"], cwd=APP_DIR, env=env, check=True
    )
    ports = [free_port(), free_port()]
    processes: list[subprocess.Popen[bytes]] = []
    nginx = Nginx(prefix=tmp / "nginx")
    try:
        for port in ports:
            log = (tmp / f"instance-{port}.log").open("wb")
            command = [f"{APP_DIR}/.venv/bin/uvicorn", "main:app", "--port", str(port)]
            command += ["--no-proxy-headers", "--http", "server_protocol:SlowClientProtocol"]
            processes.append(
                subprocess.Popen(
                    command, cwd=APP_DIR, env=env, stdout=log, stderr=log, start_new_session=True
                )
            )
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            _wait_healthy(url, process)
        nginx.start(*ports)
        yield Cluster(instance_a=urls[0], instance_b=urls[1], proxy=nginx.url)
    finally:
        nginx.stop()
        for process in processes:
            stop_process_group(process.pid, timeout=5)


def _client_headers() -> dict[str, str]:
    # A per-run client address (TEST-NET-2, a header value only): reruns within the same minute
    # never share the per-IP login counter. Both instances trust the loopback proxy hop.
    return {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}


def _register(base_url: str, headers: dict[str, str]) -> dict[str, str]:
    name = f"scale{uuid.uuid4().hex[:10]}"
    user = {"username": name, "email": f"{name}@example.com", "password": "correct-horse-42"}
    response = httpx.post(f"{base_url}/auth/register", json=user, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return {"username": user["username"], "password": user["password"]}


def _login(base_url: str, credentials: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base_url}/auth/login", json=credentials, headers=headers, timeout=10)


def test_login_limit_counts_across_both_instances(cluster: Cluster) -> None:
    headers = _client_headers()
    credentials = _register(cluster.instance_a, headers)
    alternating = [cluster.instance_a, cluster.instance_b] * LOGIN_LIMIT

    statuses = [_login(url, credentials, headers).status_code for url in alternating[:LOGIN_LIMIT]]
    over_limit_direct = _login(cluster.instance_b, credentials, headers)
    over_limit_proxied = _login(cluster.proxy, credentials, headers)

    assert statuses == [200] * LOGIN_LIMIT
    # Either instance alone has seen at most 3 logins: only a shared counter says 429 here.
    assert over_limit_direct.status_code == 429, over_limit_direct.text
    assert over_limit_proxied.status_code == 429, over_limit_proxied.text


def test_stats_cache_invalidated_by_write_on_other_instance(cluster: Cluster) -> None:
    headers = _client_headers()
    credentials = _register(cluster.proxy, headers)
    token = _login(cluster.proxy, credentials, headers).json()["access_token"]
    auth = {**headers, "Authorization": f"Bearer {token}"}

    def total(base_url: str) -> int:
        response = httpx.get(f"{base_url}/tasks/stats", headers=auth, timeout=10)
        assert response.status_code == 200, response.text
        return int(response.json()["total"])

    assert total(cluster.instance_a) == 0  # now cached
    created = httpx.post(f"{cluster.instance_b}/tasks", json={"title": "on B"}, headers=auth)
    assert created.status_code == 201, created.text

    assert total(cluster.instance_a) == 1
    assert total(cluster.proxy) == 1
