"""X-Forwarded-For through a real uvicorn started as `make run` does (issue 11 §6): only the app's
TRUSTED_PROXIES decides whom to believe, so uvicorn's own default (trust 127.0.0.1) must be off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import alembic_upgrade, app_env, live_server


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("client-ip")
    env = app_env(tmp, DATABASE_URL=f"sqlite:///{tmp / 'app.db'}")
    migrated = alembic_upgrade(tmp, env)
    assert migrated.returncode == 0, migrated.stderr
    with live_server(tmp, env, tmp / "uvicorn.log") as url:
        yield url


def test_made_up_forwarded_for_from_loopback_shares_the_login_limit(base: str) -> None:
    body = {"username": "nobody", "password": "wrong-password"}
    with httpx.Client(base_url=base, timeout=10) as http:
        statuses = [
            http.post(
                "/auth/login", json=body, headers={"X-Forwarded-For": f"203.0.113.{attempt}"}
            ).status_code
            for attempt in range(6)
        ]
    assert statuses == [401] * 5 + [429]


ROOT = Path(__file__).resolve().parent.parent
# Every place that starts the API's uvicorn outside the tests.
LAUNCHERS = ("Makefile", "docker/entrypoint.sh", "scripts/deploy/runtime-process.sh")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_turns_off_uvicorns_proxy_headers(launcher: str) -> None:
    text = (ROOT / launcher).read_text()
    assert "--no-proxy-headers" in text
    assert "--forwarded-allow-ips" not in text
    assert "server_protocol:SlowClientProtocol" in text  # slow clients cut off (test_slow_clients)
