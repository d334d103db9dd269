"""Idempotency-Key on POST /tasks and PATCH /tasks/bulk: retries replay, never redo."""

from __future__ import annotations

import asyncio
import tempfile

import httpx
import pytest

from idempotency import _fingerprint
from tests.conftest import assert_error, make_task, make_user
from tests.file_helpers import PNG


async def _count_tasks(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/tasks", headers=headers)
    return int(response.headers["x-total-count"])


async def test_retry_with_same_key_replays_first_response_without_creating_again(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    headers = {**user.headers, "Idempotency-Key": "create-1"}
    first = await client.post("/tasks", json={"title": "once"}, headers=headers)
    retry = await client.post("/tasks", json={"title": "once"}, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await _count_tasks(client, user.headers) == 1


async def test_same_key_with_different_body_is_422(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    headers = {**user.headers, "Idempotency-Key": "create-2"}
    assert (await client.post("/tasks", json={"title": "a"}, headers=headers)).status_code == 201
    assert_error(await client.post("/tasks", json={"title": "b"}, headers=headers), 422)
    assert await _count_tasks(client, user.headers) == 1


async def test_keys_are_scoped_per_user(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    body = {"title": "same body"}
    first = await client.post(
        "/tasks", json=body, headers={**alice.headers, "Idempotency-Key": "shared"}
    )
    second = await client.post(
        "/tasks", json=body, headers={**bob.headers, "Idempotency-Key": "shared"}
    )
    assert second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert second.json()["user_id"] == bob.id
    assert second.json()["id"] != first.json()["id"]


async def test_concurrent_retries_create_exactly_one_task(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    headers = {**user.headers, "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(client.post("/tasks", json={"title": "raced"}, headers=headers) for _ in range(5))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert_error(conflict, 409)
    assert await _count_tasks(client, user.headers) == 1


async def test_failed_validation_is_replayed_too(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    headers = {**user.headers, "Idempotency-Key": "bad-1"}
    first = await client.post("/tasks", json={"title": ""}, headers=headers)
    retry = await client.post("/tasks", json={"title": ""}, headers=headers)
    assert first.status_code == retry.status_code == 422
    assert retry.json() == first.json()


async def test_bulk_update_retry_is_replayed(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    body = {"task_ids": [task["id"]], "updates": {"priority": "high"}}
    headers = {**user.headers, "Idempotency-Key": "bulk-1"}
    first = await client.patch("/tasks/bulk", json=body, headers=headers)
    await client.patch(f"/tasks/{task['id']}", json={"priority": "low"}, headers=user.headers)
    retry = await client.patch("/tasks/bulk", json=body, headers=headers)
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    # Not redone: the later change stands.
    current = await client.get(f"/tasks/{task['id']}", headers=user.headers)
    assert current.json()["priority"] == "low"


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there", "é"])
async def test_malformed_key_is_422(client: httpx.AsyncClient, key: str) -> None:
    user = await make_user(client)
    response = await client.post(
        "/tasks",
        json={"title": "t"},
        headers=[
            *((name.encode(), value.encode()) for name, value in user.headers.items()),
            (b"Idempotency-Key", key.encode()),
        ],
    )
    assert_error(response, 422)
    assert await _count_tasks(client, user.headers) == 0


async def test_key_without_token_is_still_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks", json={"title": "t"}, headers={"Idempotency-Key": "k"})
    assert_error(response, 401)


async def test_upload_retry_with_same_key_stores_one_file(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    headers = {**user.headers, "Idempotency-Key": "upload-1"}
    files = {"file": ("pic.png", PNG, "image/png")}
    first = await client.post(f"/tasks/{task['id']}/files", files=files, headers=headers)
    retry = await client.post(f"/tasks/{task['id']}/files", files=files, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    listing = await client.get(f"/tasks/{task['id']}/files", headers=user.headers)
    assert [f["id"] for f in listing.json()] == [first.json()["id"]]


@pytest.mark.parametrize("offset", [0, 5, 65536 - 20, 65536 - 3])
def test_fingerprint_ignores_the_multipart_boundary_wherever_reads_split_it(offset: int) -> None:
    def fingerprint(boundary: str, content: bytes = b"b") -> str:
        payload = b"a" * offset + f"\r\n--{boundary}\r\n".encode() + content * 70_000
        scope = {
            "method": "POST",
            "path": "/tasks/1/files",
            "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
        }
        with tempfile.SpooledTemporaryFile() as body:
            body.write(payload)
            body.seek(0)
            return _fingerprint(scope, body)

    assert fingerprint("first-boundary-xyz") == fingerprint("other-boundary-123")
    assert fingerprint("first-boundary-xyz") != fingerprint("first-boundary-xyz", b"c")
