"""What an upload may be, on both backends: size (413), type (415), names, download headers."""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI

from services.file_types import FILE_TYPES, content_disposition
from settings import SUPPORTED_EXTENSIONS
from tests.conftest import assert_error, client_for, make_task, make_user
from tests.file_helpers import (
    MULTIPART,
    PART_TAIL,
    PDF,
    PNG,
    blob_keys,
    multipart,
    part_head,
    repeated,
    upload,
)
from tests.jobs_helpers import settled

pytest_plugins = ["tests.file_fixtures"]

MB = 1024 * 1024


async def _owner_and_task(client: httpx.AsyncClient) -> tuple[Any, int]:
    user = await make_user(client)
    task = await make_task(client, user)
    return user, int(task["id"])


async def _assert_nothing_stored(
    client: httpx.AsyncClient, app: FastAPI, user: Any, task_id: int
) -> None:
    listed = await client.get(f"/tasks/{task_id}/files", headers=user.headers)
    assert listed.json() == []
    assert await blob_keys(app) == set()
    upload_dir: Path = app.state.settings.upload_dir
    leftovers = [p for p in upload_dir.rglob("*") if p.is_file()] if upload_dir.exists() else []
    assert leftovers == []  # not even a temp file


# --- size ---------------------------------------------------------------------------------------


async def test_upload_oversize_chunked_body_returns_413_with_bounded_memory(
    files_client: httpx.AsyncClient,
    files_app: FastAPI,
    record_property: Any,
) -> None:
    """A 50 MB chunked upload (no Content-Length) stops at the 10 MB limit; memory stays small."""
    user, task_id = await _owner_and_task(files_client)
    sent = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        async for chunk in repeated(PNG[:8] + os.urandom(64 * 1024 - 8), 50 * MB):
            sent += len(chunk)
            yield chunk

    # tracemalloc counts the whole process: wait until no job runs (the in-process workers of
    # the apps alive in this process: a first blob cleanup on S3 loads botocore's service
    # model, ~10 MB, and once did so inside the window).
    await settled(files_app)
    gc.collect()
    tracemalloc.start()
    try:
        response = await upload(
            files_client, task_id, "huge.png", fifty_megabytes(), headers=user.headers
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record_property("peak_traced_bytes", peak)
    record_property("bytes_sent_before_413", sent)
    assert_error(response, 413, limit=10 * MB)
    assert sent < 11 * MB  # reading stopped just past the limit
    assert peak < 4 * MB, f"peak traced memory {peak / MB:.2f} MB"
    await _assert_nothing_stored(files_client, files_app, user, task_id)


async def test_upload_with_too_big_content_length_is_refused_before_reading(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user, task_id = await _owner_and_task(files_client)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield part_head("big.txt")
        pulled += 1
        yield b"x" * (20 * MB)

    response = await files_client.post(
        f"/tasks/{task_id}/files",
        content=body(),
        headers={**user.headers, "Content-Type": MULTIPART, "Content-Length": str(50 * MB)},
    )
    assert_error(response, 413)
    assert pulled == 0
    await _assert_nothing_stored(files_client, files_app, user, task_id)


async def test_upload_at_the_limit_is_accepted_one_byte_more_is_413(
    files_app_with: Any,
) -> None:
    async with (
        files_app_with(max_upload_size=100_000) as application,
        client_for(application) as client,
    ):
        user, task_id = await _owner_and_task(client)
        exact = await upload(client, task_id, "exact.txt", b"a" * 100_000, headers=user.headers)
        assert exact.status_code == 201, exact.text
        assert exact.json()["file_size"] == 100_000
        over = await upload(client, task_id, "over.txt", b"a" * 100_001, headers=user.headers)
        assert_error(over, 413, limit=100_000)
        assert len(await blob_keys(application)) == 1


# --- type ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.png", b"<!DOCTYPE html><html><script>alert(1)</script></html>"),
        ("page.png", b"\x89PNX not really"),
        ("report.pdf", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64),
        ("photo.jpg", PDF),
        ("doc.docx", PNG),
        ("notes.txt", b"<html><body>hi</body></html>"),
        ("notes.txt", b"\n  <script>alert(1)</script>"),
        ("notes.txt", b"\xef\xbb\xbf<!doctype html>"),
        ("notes.txt", b"hello\x00world"),
        ("notes.txt", b"caf\xe9 latin-1 is not UTF-8"),
        ("notes.txt", b"truncated \xe2\x82"),
        ("notes.txt", PNG),
        ("notes.txt", b"%PDF-1.4 pretending"),
        ("notes.txt", b"\x7fELF\x02\x01\x01"),
        ("empty.png", b""),
        ("tool.exe", b"MZ\x90\x00"),
        ("archive.zip", b"PK\x03\x04"),
        ("page.html", b"<html></html>"),
        ("noextension", b"plain"),
        ("../../etc/passwd", b"root:x:0:0"),
    ],
)
async def test_upload_with_lying_or_unsupported_content_returns_415(
    files_client: httpx.AsyncClient, files_app: FastAPI, name: str, data: bytes
) -> None:
    user, task_id = await _owner_and_task(files_client)
    assert_error(await upload(files_client, task_id, name, data, headers=user.headers), 415)
    await _assert_nothing_stored(files_client, files_app, user, task_id)


async def test_upload_text_with_bad_utf8_far_into_the_file_returns_415(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user, task_id = await _owner_and_task(files_client)
    data = b"fine text\n" * 200_000 + b"\xff"
    response = await upload(
        files_client, task_id, "long.txt", repeated(data, len(data)), headers=user.headers
    )
    assert_error(response, 415)
    await _assert_nothing_stored(files_client, files_app, user, task_id)


async def test_allowed_extensions_setting_narrows_the_list(files_app_with: Any) -> None:
    async with (
        files_app_with(allowed_extensions=[".pdf"]) as application,
        client_for(application) as client,
    ):
        user, task_id = await _owner_and_task(client)
        assert (
            await upload(client, task_id, "a.pdf", PDF, headers=user.headers)
        ).status_code == 201
        refused = await upload(client, task_id, "a.png", PNG, headers=user.headers)
        assert_error(refused, 415)
        assert ".pdf" in refused.json()["message"]


def test_every_supported_extension_has_a_content_check() -> None:
    assert set(SUPPORTED_EXTENSIONS) == set(FILE_TYPES)


# --- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"file": "x"}', "application/json", 415),
        (b"", "multipart/form-data", 400),
        (multipart("a.txt", b"x", field="attachment"), MULTIPART, 422),
        (b"--tm-test-boundary-7MA4YWxkTrZu0gW--\r\n", MULTIPART, 422),
        (part_head("a.txt") + b"the body stops mid-file", MULTIPART, 400),
        (b"garbage that is not multipart at all", MULTIPART, 400),
    ],
)
async def test_upload_malformed_request_is_rejected_and_stores_nothing(
    files_client: httpx.AsyncClient,
    files_app: FastAPI,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    user, task_id = await _owner_and_task(files_client)
    response = await files_client.post(
        f"/tasks/{task_id}/files",
        content=body,
        headers={**user.headers, "Content-Type": content_type},
    )
    assert_error(response, status)
    await _assert_nothing_stored(files_client, files_app, user, task_id)


async def test_upload_ignores_other_form_fields(files_client: httpx.AsyncClient) -> None:
    user, task_id = await _owner_and_task(files_client)
    other = (
        b"--tm-test-boundary-7MA4YWxkTrZu0gW\r\n"
        b'Content-Disposition: form-data; name="comment"\r\n\r\n'
        b"a note\r\n"
    )
    response = await files_client.post(
        f"/tasks/{task_id}/files",
        content=other + multipart("a.txt", b"content"),
        headers={**user.headers, "Content-Type": MULTIPART},
    )
    assert response.status_code == 201, response.text
    assert response.json()["original_filename"] == "a.txt"


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../evil.txt", "evil.txt"),
        ("../../../../../../tmp/evil.txt", "evil.txt"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        ("C:\\Users\\me\\evil.txt", "evil.txt"),
        ("/etc/cron.d/evil.txt", "evil.txt"),
        ("..", None),
        ("a\x00b.txt", "ab.txt"),
        ("\u202etxt.exe.txt", "txt.exe.txt"),
        ("  .hidden.txt  ", "hidden.txt"),
        ("x" * 300 + ".txt", "x" * 251 + ".txt"),
    ],
)
async def test_upload_hostile_name_is_sanitised_and_stored_inside_the_root(
    files_client: httpx.AsyncClient,
    files_app: FastAPI,
    tmp_path: Path,
    sent: str,
    shown: str | None,
) -> None:
    user, task_id = await _owner_and_task(files_client)
    response = await upload(files_client, task_id, sent, b"payload", headers=user.headers)
    if shown is None:
        assert_error(response, 415)
    else:
        assert response.status_code == 201, response.text
        assert response.json()["original_filename"] == shown
        assert len(shown) <= 255
    keys = await blob_keys(files_app)
    assert all(key.startswith("attachments/") and "evil" not in key for key in keys)
    # Nothing anywhere in this test's temp tree except blobs under the upload root.
    upload_root = files_app.state.settings.upload_dir / "attachments"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert path.parent == upload_root, path
    assert not list(tmp_path.rglob("*evil*"))


HEADER_NAMES = [
    'quote".txt',
    'a"; filename="evil.exe.txt',
    "semi;colon.txt",
    "comma, and = sign.txt",
    "percent %41%0D%0A.txt",
    "naïve résumé.txt",
    "日本語のファイル.txt",
    "emoji 🍕.txt",
    "tab\there.txt",
    "vertical\x0btab.txt",
    "apostrophe's.txt",
]


@pytest.mark.parametrize("name", HEADER_NAMES)
async def test_download_header_is_well_formed_for_any_name(
    files_client: httpx.AsyncClient, name: str
) -> None:
    user, task_id = await _owner_and_task(files_client)
    stored = await upload(files_client, task_id, name, b"text", headers=user.headers)
    assert stored.status_code == 201, stored.text
    shown = stored.json()["original_filename"]
    response = await files_client.get(f"/files/{stored.json()['id']}", headers=user.headers)
    assert response.status_code == 200
    _assert_rfc6266(response.headers["content-disposition"], shown)


@pytest.mark.parametrize("name", [*HEADER_NAMES, "cr\rlf\n.txt", "x\r\nSet-Cookie: a=b.txt"])
def test_content_disposition_is_well_formed_for_any_name(name: str) -> None:
    _assert_rfc6266(content_disposition(name), name)


def _assert_rfc6266(header: str, name: str) -> None:
    assert header.isascii()
    assert all(" " <= char <= "~" for char in header), header
    disposition, fallback, extended = header.split("; ")
    assert disposition == "attachment"
    assert fallback.startswith('filename="')
    assert fallback.endswith('"')
    assert '"' not in fallback[len('filename="') : -1]
    assert ";" not in fallback
    assert extended.startswith("filename*=UTF-8''")
    assert unquote(extended.removeprefix("filename*=UTF-8''"), errors="strict") == name


async def test_upload_name_with_raw_line_break_cannot_inject_part_headers(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user, task_id = await _owner_and_task(files_client)
    head = (
        b"--tm-test-boundary-7MA4YWxkTrZu0gW\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a\r.txt"\r\n\r\n'
    )
    response = await files_client.post(
        f"/tasks/{task_id}/files",
        content=head + b"x" + PART_TAIL,
        headers={**user.headers, "Content-Type": MULTIPART},
    )
    assert_error(response, 400)
    await _assert_nothing_stored(files_client, files_app, user, task_id)


async def test_client_disconnecting_mid_upload_leaves_nothing(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user, task_id = await _owner_and_task(files_client)
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": part_head("a.txt") + b"x" * 1000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/tasks/{task_id}/files",
        "raw_path": f"/tasks/{task_id}/files".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", user.headers["Authorization"].encode()),
            (b"content-type", MULTIPART.encode()),
        ],
        "client": ("10.254.0.1", 40000),
        "server": ("testserver", 80),
        "state": {},
    }
    await files_app(scope, receive, send)
    assert sent[0]["status"] == 400
    await _assert_nothing_stored(files_client, files_app, user, task_id)
