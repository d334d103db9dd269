"""Nothing lost, nothing orphaned: interrupted cleanup is finished by `reconcile-storage`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from manage import reconcile
from storage import new_key
from tests.conftest import ROOT, assert_error, client_for, make_task, make_user, migrate
from tests.file_helpers import (
    AWS_REGION,
    PDF,
    blob_keys,
    new_bucket,
    s3_admin,
    storage_of,
    upload,
)

pytest_plugins = ["tests.file_fixtures"]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _upload_ok(
    client: httpx.AsyncClient, task_id: int, name: str, data: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    response = await upload(client, task_id, name, data, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _orphan(app: FastAPI) -> str:
    """A blob with no row: what a crash between blob and row, or during cleanup, leaves."""
    key = new_key()
    await storage_of(app).save(key, _chunks(b"orphan"))
    return key


async def test_reconcile_deletes_only_old_unreferenced_blobs_and_is_idempotent(
    files_client: httpx.AsyncClient, files_app: FastAPI
) -> None:
    user = await make_user(files_client)
    task = await make_task(files_client, user)
    files = [
        await _upload_ok(files_client, task["id"], f"{i}.pdf", PDF, user.headers) for i in range(2)
    ]
    referenced = await blob_keys(files_app)
    orphans = {await _orphan(files_app), await _orphan(files_app)}
    settings = files_app.state.settings

    fresh = await reconcile(settings, grace_seconds=3600)
    assert (fresh.deleted, fresh.too_recent) == (0, 4)
    dry = await reconcile(settings, grace_seconds=0, dry_run=True)
    assert (dry.scanned, dry.referenced, dry.orphaned, dry.deleted) == (4, 2, 2, 0)
    assert await blob_keys(files_app) == referenced | orphans

    done = await reconcile(settings, grace_seconds=0)
    assert (done.scanned, done.referenced, done.orphaned, done.deleted) == (4, 2, 2, 2)
    assert await blob_keys(files_app) == referenced
    again = await reconcile(settings, grace_seconds=0)
    assert (again.scanned, again.orphaned, again.deleted) == (2, 0, 0)
    for file in files:
        download = await files_client.get(f"/files/{file['id']}", headers=user.headers)
        assert download.content == PDF


async def test_cleanup_killed_halfway_is_finished_by_reconcile(
    files_app_with: Callable[..., Any],
) -> None:
    """The process dies after the commit, before its cleanup job ran (here: it never runs, as
    no worker runs in this app): the blobs are left without rows, and reconcile removes them."""
    async with (
        files_app_with(job_worker_in_process=False) as files_app,
        client_for(files_app) as files_client,
    ):
        await _orphans_then_reconcile(files_client, files_app)


async def _orphans_then_reconcile(files_client: httpx.AsyncClient, files_app: FastAPI) -> None:
    user = await make_user(files_client)
    keeper = await make_task(files_client, user)
    kept = await _upload_ok(files_client, keeper["id"], "keep.pdf", PDF, user.headers)
    kept_keys = await blob_keys(files_app)
    task = await make_task(files_client, user)
    files = [
        await _upload_ok(files_client, task["id"], f"{i}.txt", b"bye", user.headers)
        for i in range(3)
    ]
    deleted = await files_client.delete(f"/tasks/{task['id']}", headers=user.headers)
    assert deleted.status_code == 204

    # The rows went with the commit; the three blobs are left.
    for file in files:
        assert_error(await files_client.get(f"/files/{file['id']}", headers=user.headers), 404)
    leftovers = await blob_keys(files_app) - kept_keys
    assert len(leftovers) == 3

    report = await reconcile(files_app.state.settings, grace_seconds=0)
    assert (report.orphaned, report.deleted) == (3, 3)
    assert await blob_keys(files_app) == kept_keys
    second = await reconcile(files_app.state.settings, grace_seconds=0)
    assert (second.orphaned, second.deleted) == (0, 0)
    download = await files_client.get(f"/files/{kept['id']}", headers=user.headers)
    assert download.content == PDF


async def test_reconcile_removes_half_written_local_uploads(
    app_factory: Any, tmp_path: Path
) -> None:
    """A crash mid-upload leaves a temp file under .tmp/; reconcile removes it once stale."""
    async with app_factory(storage_backend="local", upload_dir=tmp_path / "uploads") as app:
        root: Path = app.state.settings.upload_dir
        (root / ".tmp").mkdir(parents=True, exist_ok=True)  # made at start-up
        stale = root / ".tmp" / "upload-crashed"
        stale.write_bytes(b"half a file")
        os.utime(stale, (0, 0))
        fresh = root / ".tmp" / "upload-in-progress"
        fresh.write_bytes(b"streaming")
        report = await reconcile(app.state.settings, grace_seconds=60)
        assert report.incomplete_purged == 1
        assert not stale.exists()
        assert fresh.exists()


def test_reconcile_dry_run_lists_half_written_uploads_and_a_real_run_purges_them(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'reconcile.db'}"
    migrate(database_url)
    temp = tmp_path / "uploads" / ".tmp"
    temp.mkdir(parents=True)
    half_written = [temp / "upload-crashed1", temp / "upload-crashed2"]
    for path in half_written:
        path.write_bytes(b"half a file")
        os.utime(path, (0, 0))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STORAGE_BACKEND": "local",
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "REDIS_URL": "",
        "LOG_LEVEL": "INFO",
    }
    command = [sys.executable, str(ROOT / "manage.py"), "reconcile-storage"]

    def run(*extra: str) -> tuple[str, dict[str, int]]:
        done = subprocess.run(
            [*command, *extra], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        report: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
        return done.stdout, report

    output, dry = run("--dry-run")
    assert (dry["incomplete"], dry["incomplete_purged"]) == (2, 0)
    for path in half_written:
        assert f"half-written upload found name=.tmp/{path.name}" in output
        assert path.exists()  # a dry run deletes nothing
    output, real = run()
    assert (real["incomplete"], real["incomplete_purged"]) == (2, 2)
    assert "half-written upload purged name=.tmp/upload-crashed1" in output
    assert list(temp.iterdir()) == []
    assert run()[1]["incomplete"] == 0


@pytest.mark.usefixtures("aws_env")
async def test_reconcile_aborts_stale_s3_multipart_uploads(
    app_factory: Any, moto_endpoint: str
) -> None:
    bucket = new_bucket(moto_endpoint)
    admin = s3_admin(moto_endpoint)
    admin.create_multipart_upload(Bucket=bucket, Key=new_key())
    admin.create_multipart_upload(Bucket=bucket, Key="not-ours/backup.tar")
    settings = {
        "storage_backend": "s3",
        "s3_bucket_name": bucket,
        "aws_endpoint_url": moto_endpoint,
        "aws_region": AWS_REGION,
    }
    async with app_factory(**settings) as app:
        # (moto dates every upload's Initiated in 2010, so the grace period is not shown here.)
        assert (await reconcile(app.state.settings, grace_seconds=0)).incomplete_purged == 1
        assert (await reconcile(app.state.settings, grace_seconds=0)).incomplete_purged == 0
    remaining = admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [upload["Key"] for upload in remaining] == ["not-ours/backup.tar"]


async def test_reconcile_storage_command_runs_from_the_shell(
    files_client: httpx.AsyncClient, files_app: FastAPI, tmp_path: Path
) -> None:
    orphan = await _orphan(files_app)
    settings = files_app.state.settings
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": settings.database_url,
        "STORAGE_BACKEND": settings.storage_backend,
        "UPLOAD_DIR": str(settings.upload_dir),
        "S3_BUCKET_NAME": settings.s3_bucket_name or "",
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "AWS_REGION": settings.aws_region or "",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, str(ROOT / "manage.py"), "reconcile-storage", "--grace-seconds", "0"]

    async def run(*extra: str) -> dict[str, int]:
        # In a thread: the app's jobs (its relay, on the same database) keep running meanwhile.
        done = await asyncio.to_thread(
            subprocess.run,
            [*command, *extra], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
        return report

    assert (await run("--dry-run"))["orphaned"] == 1
    assert await storage_of(files_app).exists(orphan)
    assert (await run())["deleted"] == 1
    assert not await storage_of(files_app).exists(orphan)
    assert (await run())["deleted"] == 0
    assert asdict(await reconcile(settings, grace_seconds=0))["deleted"] == 0
