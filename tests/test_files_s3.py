"""S3 failures: an unreachable, silent or failing store answers 503/502 and records nothing."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_error, client_for, make_task, make_user
from tests.file_helpers import AWS_REGION, PDF, blob_keys, free_port, new_bucket, upload

pytest_plugins = ["tests.file_fixtures"]


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts connections and never answers: every request times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _s3(endpoint: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    return {
        "storage_backend": "s3",
        "s3_bucket_name": bucket,
        "aws_endpoint_url": endpoint,
        "aws_region": AWS_REGION,
        "s3_max_attempts": 1,
        "s3_connect_timeout": 1.0,
        "s3_read_timeout": 1.0,
        **overrides,
    }


def _temp_files() -> set[Path]:
    return {path for path in Path(tempfile.gettempdir()).iterdir() if path.is_file()}


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("failure", ["refused", "timeout", "no_such_bucket"])
async def test_upload_with_s3_failing_returns_5xx_and_records_nothing(
    app_factory: Any, moto_endpoint: str, silent_endpoint: str, failure: str
) -> None:
    endpoints = {
        "refused": (f"http://127.0.0.1:{free_port()}", "any-bucket", 503),
        "timeout": (silent_endpoint, "any-bucket", 503),
        "no_such_bucket": (moto_endpoint, "tm-test-bucket-that-does-not-exist", 502),
    }
    endpoint, bucket, status = endpoints[failure]
    temp_before = _temp_files()
    async with app_factory(**_s3(endpoint, bucket)) as app, client_for(app) as client:
        user = await make_user(client)
        task = await make_task(client, user)
        response = await upload(client, task["id"], "a.pdf", PDF, headers=user.headers)
        body = assert_error(response, status)
        assert "store" in body["message"]
        if status == 503:
            assert response.headers["retry-after"]
        listed = await client.get(f"/tasks/{task['id']}/files", headers=user.headers)
        assert listed.json() == []
    assert _temp_files() <= temp_before


@pytest.mark.usefixtures("aws_env")
async def test_download_and_delete_with_s3_down_fail_safely(
    app_factory: Any, moto_endpoint: str
) -> None:
    """Download answers 503; delete still removes the row, and the blob waits for reconcile."""
    bucket = new_bucket(moto_endpoint)
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        app_factory(**_s3(moto_endpoint, bucket)) as up,
        app_factory(**_s3(dead, bucket)) as down,
        client_for(up) as client,
        client_for(down) as client_down,
    ):
        user = await make_user(client)
        task = await make_task(client, user)
        stored = (await upload(client, task["id"], "a.pdf", PDF, headers=user.headers)).json()
        keys = await blob_keys(up)
        assert len(keys) == 1

        response = await client_down.get(f"/files/{stored['id']}", headers=user.headers)
        assert_error(response, 503)
        deleted = await client_down.delete(f"/files/{stored['id']}", headers=user.headers)
        assert deleted.status_code == 204
        assert_error(await client.get(f"/files/{stored['id']}", headers=user.headers), 404)
        # The background cleanup could not reach S3: the orphan is left for reconcile-storage.
        assert await blob_keys(up) == keys
