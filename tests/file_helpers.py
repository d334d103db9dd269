"""Helpers and sample files for the attachment tests (fixtures are in file_fixtures.py)."""

from __future__ import annotations

import functools
import socket
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import boto3  # type: ignore[import-untyped]  # boto3 ships no type information
import httpx
from fastapi import FastAPI

from storage import Storage

BOUNDARY = "tm-test-boundary-7MA4YWxkTrZu0gW"
AWS_REGION = "us-east-1"

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(255, -1, -1)) * 3
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
DOCX = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 64
DOC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64
TEXT = "Grocery list:\n- café\n- 寿司\n- 🍕\r\n".encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@functools.cache
def s3_admin(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=AWS_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def new_bucket(endpoint: str) -> str:
    name = f"tm-test-{uuid.uuid4().hex[:16]}"
    s3_admin(endpoint).create_bucket(Bucket=name)
    return name


def storage_of(app: FastAPI) -> Storage:
    storage: Storage = app.state.storage
    return storage


async def blob_keys(app: FastAPI) -> set[str]:
    return {blob.key async for blob in storage_of(app).list_blobs()}


def _quoted(filename: str) -> str:
    return filename.replace("\\", "\\\\").replace('"', '\\"')


def part_head(filename: str, *, field: str = "file", content_type: str = "text/plain") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{_quoted(filename)}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


PART_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(filename: str, data: bytes, **kwargs: str) -> bytes:
    return part_head(filename, **kwargs) + data + PART_TAIL


async def upload(
    client: httpx.AsyncClient,
    task_id: int,
    filename: str,
    data: bytes | AsyncIterable[bytes],
    *,
    headers: dict[str, str],
) -> httpx.Response:
    """POST a file; an async iterable is sent chunked, without Content-Length."""
    body: bytes | AsyncIterable[bytes]
    body = multipart(filename, data) if isinstance(data, bytes) else _framed(filename, data)
    return await client.post(
        f"/tasks/{task_id}/files",
        content=body,
        headers={**headers, "Content-Type": MULTIPART},
    )


async def _framed(filename: str, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    yield part_head(filename)
    async for chunk in chunks:
        yield chunk
    yield PART_TAIL


async def repeated(chunk: bytes, total: int) -> AsyncIterator[bytes]:
    """`total` bytes made of `chunk`, generated lazily (never held whole)."""
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece
