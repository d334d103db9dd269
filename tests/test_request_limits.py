"""Oversized bodies are refused with 413 before they are read whole or parsed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from tests.conftest import assert_error, make_user


async def test_json_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    huge = b'{"title": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/tasks", content=huge, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert_error(response, 413)


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    user = await make_user(client)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    response = await client.post(
        "/tasks", content=chunks(), headers={**user.headers, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413)


async def test_body_under_the_limit_is_served(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    response = await client.post("/tasks", json={"title": "fine"}, headers=user.headers)
    assert response.status_code == 201


async def test_deeply_nested_json_is_a_clean_4xx(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    nested = b"[" * 100_000 + b"]" * 100_000
    response = await client.patch(
        "/tasks/bulk", content=nested, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"]
