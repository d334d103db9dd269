"""Slow clients (issue 11 §5) against a real uvicorn started as `make run` does: connections that
trickle a request head or stall in a body are answered 408 and closed within the timeout, while
normal requests on other connections keep answering promptly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.live_server import alembic_upgrade, app_env, live_server

TIMEOUT = 2.0  # seconds, both timeouts of the test server
MARGIN = 2.5  # a loaded 2-core CI machine
CONNECTIONS = 20


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("slow-clients")
    env = app_env(
        tmp,
        DATABASE_URL=f"sqlite:///{tmp / 'app.db'}",
        CLIENT_HEADER_TIMEOUT=str(TIMEOUT),
        CLIENT_BODY_TIMEOUT=str(TIMEOUT),
    )
    migrated = alembic_upgrade(tmp, env)
    assert migrated.returncode == 0, migrated.stderr
    with live_server(tmp, env, tmp / "uvicorn.log") as url:
        yield url


def test_client_timeouts_default_to_the_documented_values() -> None:
    settings = Settings(_env_file=None)
    assert settings.client_header_timeout == 10.0
    assert settings.client_body_timeout == 30.0


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


async def _slow_client(base: str, behave: Behaviour) -> tuple[float, bytes]:
    """Connect, act slowly, and return (seconds until the server closed, what it answered)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    sender = asyncio.create_task(behave(reader, writer))
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=TIMEOUT + 10)  # until EOF
    finally:
        sender.cancel()
        writer.close()
    return time.monotonic() - started, answer


async def _normal_traffic(base: str, stop: asyncio.Event) -> list[float]:
    """GET /health on fresh connections until stopped; each answer's latency."""
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not stop.is_set():
            started = time.monotonic()
            response = await http.get("/health", headers={"Connection": "close"})
            assert response.status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    return latencies


async def _many(base: str, behave: Behaviour) -> tuple[list[tuple[float, bytes]], list[float]]:
    stop = asyncio.Event()
    traffic = asyncio.create_task(_normal_traffic(base, stop))
    try:
        results = await asyncio.gather(*(_slow_client(base, behave) for _ in range(CONNECTIONS)))
    finally:
        stop.set()
    return list(results), await traffic


def _assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    error = json.loads(body)
    assert error["error"] == "Request Timeout"
    assert error["message"]


async def _trickle(writer: asyncio.StreamWriter, data: bytes, pause: float) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(pause)


async def test_trickled_request_heads_are_cut_off_while_others_are_served(base: str) -> None:
    async def trickle_head(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
        await _trickle(writer, head, 0.2)

    results, latencies = await _many(base, trickle_head)
    for elapsed, answer in results:
        assert TIMEOUT - 0.2 <= elapsed < TIMEOUT + MARGIN, elapsed
        _assert_408(answer)
    assert len(latencies) >= 5
    assert max(latencies) < 1.5, latencies


async def test_idle_connections_are_closed_without_an_answer(base: str) -> None:
    async def say_nothing(_: asyncio.StreamReader, __: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    results, _ = await _many(base, say_nothing)
    for elapsed, answer in results:
        assert elapsed < TIMEOUT + MARGIN, elapsed
        assert answer == b""


async def test_stalled_request_bodies_are_cut_off_while_others_are_served(base: str) -> None:
    async def stall_body(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60\r\n\r\n" + b'{"username": "a'
        )
        await writer.drain()
        await asyncio.sleep(60)

    results, latencies = await _many(base, stall_body)
    for elapsed, answer in results:
        assert TIMEOUT - 0.2 <= elapsed < TIMEOUT + MARGIN, elapsed
        _assert_408(answer)
    assert max(latencies) < 1.5, latencies


async def test_a_body_sent_in_pieces_within_the_timeout_is_served(base: str) -> None:
    async def pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"username": "nobody", "password": "wrong-password"}).encode()
        writer.write(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for at in range(0, len(body), 10):  # 3 s in all, never idle for the timeout
            writer.write(body[at : at + 10])
            await writer.drain()
            await asyncio.sleep(TIMEOUT / 3)

    elapsed, answer = await _slow_client(base, pieces)
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert elapsed > TIMEOUT


async def test_next_head_on_a_kept_alive_connection_is_timed_too(base: str) -> None:
    async def keep_alive_then_trickle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await _trickle(writer, b"GET /version HTTP/1.1\r\nHost: x\r\n" + b"X: " * 500, 0.2)

    elapsed, answer = await _slow_client(base, keep_alive_then_trickle)
    first, _, rest = answer.partition(b"HTTP/1.1 408 ")
    assert first.startswith(b"HTTP/1.1 200 "), answer
    assert rest, answer
    assert elapsed < TIMEOUT + MARGIN
