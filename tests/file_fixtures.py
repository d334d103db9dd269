"""Fixtures for the attachment tests, loaded with `pytest_plugins = ["tests.file_fixtures"]`.

Every attachment test runs on both storage backends: the local disk (a fresh folder per test)
and S3, served by moto's real HTTP server on a loopback port (a fresh bucket per test), so the
boto3 client talks HTTP exactly as it would to AWS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from moto.server import ThreadedMotoServer

from tests.conftest import client_for
from tests.file_helpers import free_port, new_bucket


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto), started once per run on a loopback port."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through the standard chain; nothing read from the developer's ~/.aws."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(params=["local", "s3"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings overrides for a fresh store on one backend: its own folder or its own bucket."""
    if request.param == "local":
        yield {"storage_backend": "local", "upload_dir": tmp_path / "uploads"}
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("aws_env")
    yield {
        "storage_backend": "s3",
        "s3_bucket_name": new_bucket(endpoint),
        "aws_endpoint_url": endpoint,
        "aws_region": "us-east-1",
        "upload_dir": tmp_path / "unused-uploads",
    }


@pytest.fixture
async def files_app(
    app_factory: Callable[..., Any], backend_settings: dict[str, Any]
) -> AsyncIterator[FastAPI]:
    async with app_factory(**backend_settings) as application:
        yield application


@pytest.fixture
async def worker_files_app(
    worker_app_factory: Callable[..., Any], backend_settings: dict[str, Any]
) -> AsyncIterator[FastAPI]:
    """An app on this test's backend whose job worker (blob cleanup) uses that backend: it has
    a database of its own, so only its relay derives the jobs."""
    async with worker_app_factory(**backend_settings) as application:
        yield application


@pytest.fixture
async def files_client(files_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(files_app) as http:
        yield http


@pytest.fixture
def files_app_with(
    app_factory: Callable[..., Any], backend_settings: dict[str, Any]
) -> Callable[..., Any]:
    """Like `app_factory`, on this test's backend: `async with files_app_with(**overrides)`."""

    def factory(**overrides: Any) -> Any:
        return app_factory(**{**backend_settings, **overrides})

    return factory
