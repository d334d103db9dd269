"""Faults survived: PostgreSQL cut mid-run, and SIGTERM while requests are in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth import create_access_token
from db_config import normalize_database_url
from tests.conftest import ROOT, assert_error, client_for, make_task, make_user, migrate
from tests.file_helpers import PNG, free_port
from tests.network import TcpProxy

_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgres")


@pytest.mark.skipif(not _POSTGRES, reason="needs PostgreSQL (TEST_DATABASE_URL)")
async def test_database_cut_mid_run_gives_503_then_recovers_with_nothing_half_written(
    app_factory: Callable[..., Any], database_url: str
) -> None:
    target = normalize_database_url(database_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.start()
    via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        app_cm = app_factory(database_url=via_proxy, db_connect_timeout=1)
        async with app_cm as app, client_for(app) as client:
            user = await make_user(client)
            tasks = [await make_task(client, user, title=f"t{i}") for i in range(3)]
            bulk = {"task_ids": [t["id"] for t in tasks], "updates": {"title": "changed"}}

            proxy.stop()  # the database goes away mid-run
            one = f"/tasks/{tasks[0]['id']}"
            for response in (
                await client.get("/tasks", headers=user.headers),
                # Read on asyncpg directly (db_config.DriverQuery): the same 503.
                await client.get(one, headers=user.headers),
                await client.patch("/tasks/bulk", json=bulk, headers=user.headers),
            ):
                body = assert_error(response, 503)
                assert "Traceback" not in response.text
                assert body["error"] == "Service Unavailable"
            assert (await client.get("/health")).status_code == 503

            proxy.start()  # and comes back: the pool recovers by itself
            statuses = [
                (await client.get("/tasks", headers=user.headers)).status_code for _ in range(4)
            ]
            assert statuses[-2:] == [200, 200], statuses
            assert set(statuses) <= {200, 503}, statuses
            fetched = await client.get(one, headers=user.headers)
            assert fetched.status_code == 200
            assert fetched.json()["title"] == "t0"
            listed = await client.get("/tasks", headers=user.headers)
            assert [t["title"] for t in listed.json()] == ["t0", "t1", "t2"]
    finally:
        proxy.stop()


# Nothing answers on port 9 (discard); no name under .invalid ever resolves (RFC 2606).
_REFUSED = "postgresql://nobody@127.0.0.1:9/none"
_UNRESOLVABLE = "postgresql://nobody@database.invalid/none"


@pytest.mark.parametrize("dead_url", [_REFUSED, _UNRESOLVABLE], ids=["refused", "no-dns"])
async def test_database_unreachable_gives_503_on_every_route_idempotent_ones_included(
    app_factory: Callable[..., Any], dead_url: str
) -> None:
    async with app_factory(database_url=dead_url, db_connect_timeout=1) as app:
        token = create_access_token(1, session_id=1, secret=app.state.secret_key, expires_minutes=5)
        headers = {"Authorization": f"Bearer {token}"}
        async with client_for(app) as client:
            answers = [
                await client.get("/tasks", headers=headers),
                await client.post("/tasks", json={"title": "t"}, headers=headers),
                # The idempotency layer reads the database before the app's handlers run.
                await client.post(
                    "/tasks", json={"title": "t"}, headers={**headers, "Idempotency-Key": "k1"}
                ),
                await client.post("/auth/login", json={"username": "x", "password": "y"}),
            ]
            health = await client.get("/health")
    for response in answers:
        body = assert_error(response, 503)
        assert body["error"] == "Service Unavailable"
        assert response.headers["Retry-After"].isdigit()
    assert health.status_code == 503
    assert health.json()["database"] == "unavailable"


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    database_url = f"sqlite:///{tmp_path / 'sigterm.db'}"
    migrate(database_url)
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "sigterm-test-secret-key-of-enough-length",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def server(server_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real uvicorn process on its own SQLite database."""
    port = free_port()
    env = server_env
    command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
    command += ["--no-proxy-headers", "--http", "server_protocol:SlowClientProtocol"]
    process = subprocess.Popen([*command, "--timeout-graceful-shutdown", "20"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_sigterm_lets_an_in_flight_upload_finish(
    server: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, base = server
    with httpx.Client(base_url=base, timeout=30) as client:
        name = f"sig{os.getpid()}"
        client.post(
            "/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": "long-password"},
        ).raise_for_status()
        token = client.post(
            "/auth/login", json={"username": name, "password": "long-password"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        task = client.post("/tasks", json={"title": "t"}, headers=headers).json()

        first_chunk_sent, release = threading.Event(), threading.Event()
        boundary = "sigterm-boundary"

        def body() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode() + PNG[:16]
            first_chunk_sent.set()
            release.wait(timeout=10)  # the server gets SIGTERM while this request is open
            yield PNG[16:] + f"\r\n--{boundary}--\r\n".encode()

        result: dict[str, httpx.Response] = {}

        def upload() -> None:
            result["response"] = client.post(
                f"/tasks/{task['id']}/files",
                content=body(),
                headers={
                    **headers,
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
            )

        uploader = threading.Thread(target=upload)
        uploader.start()
        assert first_chunk_sent.wait(timeout=10)
        time.sleep(0.3)  # let the server start reading the body before the signal
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        release.set()
        uploader.join(timeout=20)

    assert result["response"].status_code == 201, result["response"].text
    assert result["response"].json()["file_size"] == len(PNG)
    # Then it shuts down cleanly (uvicorn re-raises the signal once it has finished).
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)


def _login(client: httpx.Client, name: str) -> dict[str, str]:
    body = {"username": name, "email": f"{name}@example.com", "password": "long-password"}
    client.post("/auth/register", json=body).raise_for_status()
    token = client.post("/auth/login", json={"username": name, "password": "long-password"})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_sigterm_during_blob_cleanup_leaves_nothing_the_reconciler_cannot_finish(
    server: tuple[subprocess.Popen[bytes], str], server_env: dict[str, str]
) -> None:
    process, base = server
    blobs = Path(server_env["UPLOAD_DIR"]) / "attachments"
    with httpx.Client(base_url=base, timeout=30) as client:
        headers = _login(client, f"cleanup{os.getpid()}")
        task = client.post("/tasks", json={"title": "t"}, headers=headers).json()
        for n in range(5):
            upload = client.post(
                f"/tasks/{task['id']}/files",
                files={"file": (f"f{n}.png", PNG, "image/png")},
                headers=headers,
            )
            assert upload.status_code == 201
        assert len(list(blobs.iterdir())) == 5
        # The rows go with the response; the blobs in a background task the signal races.
        assert client.delete(f"/tasks/{task['id']}", headers=headers).status_code == 204
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    reconcile = subprocess.run(
        [sys.executable, "manage.py", "reconcile-storage", "--grace-seconds", "0"],
        cwd=ROOT,
        env=server_env,
        capture_output=True,
        check=True,
    )
    assert list(blobs.iterdir()) == [], reconcile.stdout  # no blob outlives its row
