"""Attachments through HTTP on both backends: round trips, listing, deletion, isolation."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import assert_error, client_for, make_task, make_user
from tests.file_helpers import (
    DOC,
    DOCX,
    GIF,
    JPEG,
    PDF,
    PNG,
    TEXT,
    blob_keys,
    repeated,
    storage_of,
    upload,
)
from tests.jobs_helpers import settled

pytest_plugins = ["tests.file_fixtures"]

FILE_KEYS = {
    "id", "task_id", "original_filename", "file_size", "content_type", "sha256", "uploaded_at",
}  # fmt: skip


async def _upload_ok(
    client: httpx.AsyncClient, task_id: int, name: str, data: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    response = await upload(client, task_id, name, data, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_upload_text_file_round_trips_exact_bytes(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    stored = await _upload_ok(files_client, task["id"], "notes.txt", TEXT, user.headers)
    assert set(stored) == FILE_KEYS
    assert stored["task_id"] == task["id"]
    assert stored["original_filename"] == "notes.txt"
    assert stored["file_size"] == len(TEXT)
    assert stored["content_type"] == "text/plain; charset=utf-8"
    assert stored["sha256"] == hashlib.sha256(TEXT).hexdigest()
    assert len(await blob_keys(files_app)) == 1

    response = await files_client.get(f"/files/{stored['id']}", headers=user.headers)
    assert response.status_code == 200
    assert response.content == TEXT
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(TEXT))
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
    )


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("photo.png", PNG, "image/png"),
        ("scan.PDF", PDF, "application/pdf"),
        ("shot.jpg", JPEG, "image/jpeg"),
        ("shot.jpeg", JPEG, "image/jpeg"),
        ("anim.gif", GIF, "image/gif"),
        ("old.doc", DOC, "application/msword"),
        (
            "new.docx",
            DOCX,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ],
)
async def test_upload_binary_file_round_trips_exact_bytes(
    files_client: httpx.AsyncClient, name: str, data: bytes, content_type: str
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    stored = await _upload_ok(files_client, task["id"], name, data, user.headers)
    assert stored["content_type"] == content_type
    assert stored["file_size"] == len(data)
    response = await files_client.get(f"/files/{stored['id']}", headers=user.headers)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == content_type


async def test_upload_streamed_without_length_round_trips_large_binary(
    files_client: httpx.AsyncClient,
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    data = PNG + os.urandom(3 * 1024 * 1024 + 17)
    response = await upload(
        files_client, task["id"], "big.png", repeated(data, len(data)), headers=user.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
    download = await files_client.get(f"/files/{response.json()['id']}", headers=user.headers)
    assert download.content == data


async def test_upload_empty_text_file_is_accepted(files_client: httpx.AsyncClient) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    stored = await _upload_ok(files_client, task["id"], "empty.txt", b"", user.headers)
    assert stored["file_size"] == 0
    download = await files_client.get(f"/files/{stored['id']}", headers=user.headers)
    assert download.status_code == 200
    assert download.content == b""


async def test_list_files_returns_the_tasks_files_in_upload_order(
    files_client: httpx.AsyncClient,
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    other_task = await make_task(files_client, user)
    first = await _upload_ok(files_client, task["id"], "a.txt", b"first", user.headers)
    second = await _upload_ok(files_client, task["id"], "b.png", PNG, user.headers)
    await _upload_ok(files_client, other_task["id"], "c.txt", b"elsewhere", user.headers)
    response = await files_client.get(f"/tasks/{task['id']}/files", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == [first, second]
    empty = await make_task(files_client, user)
    response = await files_client.get(f"/tasks/{empty['id']}/files", headers=user.headers)
    assert response.json() == []


async def test_delete_file_returns_204_removes_row_and_blob(
    worker_files_app: FastAPI,
) -> None:
    files_app = worker_files_app
    async with client_for(files_app) as files_client:
        await _delete_file_checked(files_client, files_app)


async def _delete_file_checked(files_client: httpx.AsyncClient, files_app: FastAPI) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    kept = await _upload_ok(files_client, task["id"], "keep.txt", b"keep", user.headers)
    before = await blob_keys(files_app)
    doomed = await _upload_ok(files_client, task["id"], "gone.txt", b"gone", user.headers)
    (doomed_key,) = await blob_keys(files_app) - before

    response = await files_client.delete(f"/files/{doomed['id']}", headers=user.headers)
    assert response.status_code == 204
    assert response.content == b""
    await settled(files_app)  # the blob goes by a job derived from the file.deleted event
    assert not await storage_of(files_app).exists(doomed_key)
    assert await blob_keys(files_app) == before
    assert_error(
        await files_client.get(f"/files/{doomed['id']}", headers=user.headers),
        404,
        file_id=doomed["id"],
    )
    assert_error(await files_client.delete(f"/files/{doomed['id']}", headers=user.headers), 404)
    listed = await files_client.get(f"/tasks/{task['id']}/files", headers=user.headers)
    assert listed.json() == [kept]


async def test_delete_task_removes_its_files_and_blobs(
    worker_files_app: FastAPI,
) -> None:
    files_app = worker_files_app
    async with client_for(files_app) as files_client:
        await _delete_task_checked(files_client, files_app)


async def _delete_task_checked(files_client: httpx.AsyncClient, files_app: FastAPI) -> None:
    user = await make_user(files_client)
    survivor = await make_task(files_client, user)
    kept = await _upload_ok(files_client, survivor["id"], "keep.pdf", PDF, user.headers)
    kept_keys = await blob_keys(files_app)
    task = await make_task(files_client, user)
    files = [
        await _upload_ok(files_client, task["id"], f"f{i}.txt", f"file {i}".encode(), user.headers)
        for i in range(3)
    ]
    assert len(await blob_keys(files_app)) == 4

    assert (
        await files_client.delete(f"/tasks/{task['id']}", headers=user.headers)
    ).status_code == 204
    for file in files:
        assert_error(await files_client.get(f"/files/{file['id']}", headers=user.headers), 404)
    assert_error(await files_client.get(f"/tasks/{task['id']}/files", headers=user.headers), 404)
    await settled(files_app)
    assert await blob_keys(files_app) == kept_keys
    download = await files_client.get(f"/files/{kept['id']}", headers=user.headers)
    assert download.content == PDF


async def test_another_users_file_is_forbidden_and_untouched(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    owner = await make_user(files_client)
    intruder = await make_user(files_client)
    task = await make_task(files_client, owner)
    stored = await _upload_ok(files_client, task["id"], "secret.txt", b"secret", owner.headers)
    keys = await blob_keys(files_app)

    download = await files_client.get(f"/files/{stored['id']}", headers=intruder.headers)
    body = assert_error(download, 403, file_id=stored["id"])
    assert "secret" not in download.text.replace(body["message"], "")
    assert_error(await files_client.delete(f"/files/{stored['id']}", headers=intruder.headers), 403)
    assert_error(
        await files_client.get(f"/tasks/{task['id']}/files", headers=intruder.headers), 403
    )
    response = await upload(files_client, task["id"], "x.txt", b"planted", headers=intruder.headers)
    assert_error(response, 403, task_id=task["id"])

    assert await blob_keys(files_app) == keys
    listed = await files_client.get(f"/tasks/{task['id']}/files", headers=owner.headers)
    assert listed.json() == [stored]
    assert (
        await files_client.get(f"/files/{stored['id']}", headers=owner.headers)
    ).content == b"secret"


async def test_missing_file_or_task_returns_404(files_client: httpx.AsyncClient) -> None:
    user = await make_user(files_client)
    missing = 2**31 - 1
    assert_error(
        await files_client.get(f"/files/{missing}", headers=user.headers), 404, file_id=missing
    )
    assert_error(await files_client.delete(f"/files/{missing}", headers=user.headers), 404)
    assert_error(await files_client.get(f"/tasks/{missing}/files", headers=user.headers), 404)
    response = await upload(files_client, missing, "a.txt", b"x", headers=user.headers)
    assert_error(response, 404, task_id=missing)


@pytest.mark.parametrize("file_id", ["0", "-1", "abc", "2147483648"])
async def test_file_id_out_of_range_returns_422(client: httpx.AsyncClient, file_id: str) -> None:
    # Path validation happens before storage is touched: one backend is enough.
    user = await make_user(client)
    assert_error(await client.get(f"/files/{file_id}", headers=user.headers), 422)
    assert_error(await client.delete(f"/files/{file_id}", headers=user.headers), 422)


async def test_file_endpoints_without_token_return_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/files/1"), 401)
    assert_error(await client.delete("/files/1"), 401)
    assert_error(await client.get("/tasks/1/files"), 401)
    assert_error(await upload(client, 1, "a.txt", b"x", headers={}), 401)


async def test_download_with_blob_missing_returns_404(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    stored = await _upload_ok(files_client, task["id"], "a.txt", b"here", user.headers)
    (key,) = await blob_keys(files_app)
    await storage_of(files_app).delete(key)
    assert_error(await files_client.get(f"/files/{stored['id']}", headers=user.headers), 404)


async def test_upload_rate_limit_applies_per_user(files_app_with: Any) -> None:
    async with (
        files_app_with(rate_limit_upload="2/hour") as application,
        client_for(application) as client,
    ):
        user = await make_user(client)
        task = await make_task(client, user)
        for _ in range(2):
            await _upload_ok(client, task["id"], "a.txt", b"x", user.headers)
        limited = await upload(client, task["id"], "a.txt", b"x", headers=user.headers)
        assert_error(limited, 429)
        assert limited.headers["retry-after"]
        assert len(await blob_keys(application)) == 2
        other = await make_user(client)
        other_task = await make_task(client, other)
        await _upload_ok(client, other_task["id"], "a.txt", b"x", other.headers)


async def test_openapi_documents_the_upload_as_a_file_field(
    files_client: httpx.AsyncClient,
) -> None:
    schema = (await files_client.get("/openapi.json")).json()
    upload_op = schema["paths"]["/tasks/{task_id}/files"]["post"]
    form = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    assert form["required"] == ["file"]
    assert {"413", "415", "403"} <= set(upload_op["responses"])
    assert "/files/{file_id}" in schema["paths"]


class _DeletesTaskAfterSave:
    """Storage that lets another request delete the task once the blob is stored."""

    def __init__(self, inner: Any, delete_task: Any) -> None:
        self._inner = inner
        self._delete_task = delete_task

    async def save(self, key: str, chunks: Any) -> None:
        await self._inner.save(key, chunks)
        assert await self._inner.exists(key)
        await self._delete_task()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_upload_whose_task_is_deleted_meanwhile_returns_404_and_removes_the_blob(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)

    async def delete_task() -> None:
        response = await files_client.delete(f"/tasks/{task['id']}", headers=user.headers)
        assert response.status_code == 204

    real = storage_of(files_app)
    files_app.state.storage = _DeletesTaskAfterSave(real, delete_task)
    try:
        response = await upload(files_client, task["id"], "late.txt", b"late", headers=user.headers)
    finally:
        files_app.state.storage = real
    assert_error(response, 404, task_id=task["id"])
    assert await blob_keys(files_app) == set()


async def test_racing_deletes_of_one_file_give_one_204_and_the_rest_404(
    files_client: httpx.AsyncClient,
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    for round_ in range(5):
        file = await _upload_ok(files_client, task["id"], f"f{round_}.txt", b"x", user.headers)
        deletes = [
            files_client.delete(f"/files/{file['id']}", headers=user.headers) for _ in range(3)
        ]
        statuses = sorted(r.status_code for r in await asyncio.gather(*deletes))
        assert statuses == [204, 404, 404], (round_, statuses)
