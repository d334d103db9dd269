"""The API as `make run` starts it: real `alembic` and `uvicorn` processes on loopback.

Each runs in a fresh folder of its own (so no developer's `.env` is read) with a minimal
environment, and imports the app from the checkout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "live-server-secret-key-that-is-long-enough"


def app_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """A clean environment for the app: only PATH and what the test names."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "ENVIRONMENT": "test",
        "SECRET_KEY": SECRET,
        "SECRET_KEY_FILE": str(tmp / ".secret_key"),
        "UPLOAD_DIR": str(tmp / "uploads"),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
        "GC_TUNING": "false",
    }
    env.update(overrides)
    return env


def alembic_upgrade(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`alembic upgrade head`, the first step of `make run`."""
    return subprocess.run(
        [str(BIN / "alembic"), "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def uvicorn_args(port: int) -> list[str]:
    """The uvicorn command line of `make run` (see Makefile)."""
    return [
        str(BIN / "uvicorn"), "main:app", "--app-dir", str(ROOT),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--no-access-log", "--no-proxy-headers", "--http", "server_protocol:SlowClientProtocol",
        "--timeout-graceful-shutdown", "8",
        "--log-config", str(ROOT / "uvicorn-logging.json"),
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(tmp: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """Serve the app with uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            uvicorn_args(port), cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not answer in 30 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited 15 s later."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def migrated_server(tmp: Path, database_url: str, redis_url: str | None) -> Iterator[str]:
    """`make run` on this database (migrated first) and Redis, with a key prefix of its own."""
    redis = {"REDIS_KEY_PREFIX": f"tmlive:{os.urandom(4).hex()}:"}
    if redis_url:
        redis["REDIS_URL"] = redis_url
    env = app_env(tmp, DATABASE_URL=database_url, **redis)
    assert alembic_upgrade(tmp, env).returncode == 0
    with live_server(tmp, env, tmp / "uvicorn.log") as base:
        yield base
