"""Committed work survives killing the processes that do it (issue #14): real uvicorn and
`manage.py worker` processes, killed with SIGKILL mid-way, and a real SMTP server (aiosmtpd)
that holds the first delivery so the kill lands while the job is running.

* SQLite (the embedded default): the API runs the worker; killed while the completion email is
  being sent, the email is sent after a restart (the relay re-derives the unfinished batch).
* PostgreSQL: a worker killed while sending is replaced by another, which runs the stalled job;
  and an API killed right after the commit, before any job existed, loses nothing: the worker
  started afterwards derives the email from the committed event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.live_server import ROOT, alembic_upgrade, app_env, free_port, stop, uvicorn_args

_POSTGRES = os.environ.get("TEST_DATABASE_URL", "")


class HoldingInbox:
    """Accepts mail, but holds the first DATA until released (the kill comes meanwhile)."""

    def __init__(self) -> None:
        self.accepted: list[Envelope] = []
        self.started = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.started.set()
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        self.accepted.append(envelope)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[HoldingInbox, int]]:
    handler, port = HoldingInbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    handler.release.set()
    controller.stop()


def _env(tmp: Path, database: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = app_env(
        tmp, DATABASE_URL=database, SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port),
        SMTP_STARTTLS="false", SMTP_TIMEOUT="60", JOB_STALLED_SECONDS="4",
        REDIS_KEY_PREFIX=f"tmkill:{uuid.uuid4().hex[:8]}:", **extra,
    )  # fmt: skip
    assert alembic_upgrade(tmp, env).returncode == 0
    return env


@contextmanager
def _process(args: list[str], env: dict[str, str], tmp: Path, log: str) -> Iterator[Any]:
    with (tmp / log).open("a") as out:
        process = subprocess.Popen(args, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            stop(process)


@contextmanager
def api(tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    port = free_port()
    with _process(uvicorn_args(port), env, tmp, "api.log") as process:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp / "api.log").read_text()
            try:
                if httpx.get(f"{base}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp / "api.log").read_text()
            time.sleep(0.1)
        yield base, process


def worker(tmp: Path, env: dict[str, str]) -> Any:
    args = [sys.executable, str(ROOT / "manage.py"), "worker", "--name", "kill-test"]
    return _process(args, env, tmp, "worker.log")


def _complete_a_task(base: str) -> dict[str, Any]:
    """Register, log in, create a task and complete it: the write that asks for an email."""
    name = f"kill{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.com"
    password = "a long enough password"
    body = {"username": name, "email": email, "password": password}
    assert httpx.post(f"{base}/auth/register", json=body).status_code == 201
    login = httpx.post(f"{base}/auth/token", data={"username": name, "password": password})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    task = httpx.post(f"{base}/tasks", json={"title": "Survive"}, headers=headers).json()
    done = httpx.patch(f"{base}/tasks/{task['id']}", json={"completed": True}, headers=headers)
    assert done.status_code == 200
    return {"email": email, "task_id": task["id"]}


def _kill(process: Any) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def _the_completion_email(handler: HoldingInbox, email: str) -> None:
    _wait_for(lambda: handler.accepted, 60, "the completion email")
    assert [envelope.rcpt_tos for envelope in handler.accepted] == [[email]]
    content = (handler.accepted[0].original_content or b"").decode()
    assert "Survive" in content


@pytest.mark.skipif(bool(_POSTGRES), reason="SQLite: the API runs the jobs itself")
def test_an_api_killed_while_sending_sends_after_its_restart(
    tmp_path: Path, empty_database: str, inbox: tuple[HoldingInbox, int]
) -> None:
    handler, port = inbox
    env = _env(tmp_path, empty_database, port)
    with api(tmp_path, env) as (base, process):
        wrote = _complete_a_task(base)
        _wait_for(handler.started.is_set, 30, "the job reaching the SMTP server")
        _kill(process)
    handler.release.set()
    assert handler.accepted == []  # the killed process never finished its delivery
    with api(tmp_path, env):
        _the_completion_email(handler, wrote["email"])


@pytest.mark.skipif(not _POSTGRES, reason="PostgreSQL: workers are processes of their own")
def test_a_worker_killed_while_sending_is_replaced_and_nothing_is_lost(
    tmp_path: Path, empty_database: str, inbox: tuple[HoldingInbox, int]
) -> None:
    handler, port = inbox
    env = _env(tmp_path, empty_database, port, JOB_WORKER_IN_PROCESS="false")
    with api(tmp_path, env) as (base, _), worker(tmp_path, env) as first:
        wrote = _complete_a_task(base)
        _wait_for(handler.started.is_set, 30, "the job reaching the SMTP server")
        _kill(first)
        handler.release.set()
        assert handler.accepted == []
        with worker(tmp_path, env):  # runs the stalled job once the dead one misses 4 s
            _the_completion_email(handler, wrote["email"])


@pytest.mark.skipif(not _POSTGRES, reason="PostgreSQL: workers are processes of their own")
def test_an_api_killed_after_the_commit_loses_nothing(
    tmp_path: Path, empty_database: str, inbox: tuple[HoldingInbox, int]
) -> None:
    handler, port = inbox
    handler.release.set()
    env = _env(tmp_path, empty_database, port, JOB_WORKER_IN_PROCESS="false")
    with api(tmp_path, env) as (base, process):
        wrote = _complete_a_task(base)  # no worker anywhere: no job exists yet
        _kill(process)
    with worker(tmp_path, env):
        _the_completion_email(handler, wrote["email"])
