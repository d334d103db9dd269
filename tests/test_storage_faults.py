"""Local storage faults: a full disk is 507 and leaves no temp file; a missing or read-only
UPLOAD_DIR is found at start-up, named in the log, reported by /health (503) and answered 503.

The disk is real where it can be: a small tmpfs when this process may mount one (root), and
/dev/full (every write fails with ENOSPC, from the kernel) everywhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error, client_for, make_task, make_user
from tests.file_helpers import PNG, repeated, upload

LOCAL = {"storage_backend": "local"}


def _mount_tmpfs(target: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if not _mount_tmpfs(mountpoint, "size=256k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the /dev/full test covers ENOSPC")
    try:
        yield mountpoint
    finally:
        _unmount(mountpoint)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing UPLOAD_DIR that refuses writes: a read-only mount, or mode 0555 (not root)."""
    target = tmp_path / "read-only"
    target.mkdir()
    if _mount_tmpfs(target, "ro,size=64k"):
        try:
            yield target
        finally:
            _unmount(target)
    elif os.geteuid() != 0:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)
    else:
        pytest.skip("root cannot make a read-only folder without mounting one")


def _fill(disk: Path) -> Path:
    """Take every free block of the filesystem; return the filler file."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize))
    assert os.statvfs(disk).f_bavail == 0
    return filler


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


async def _owner_and_task(client: httpx.AsyncClient) -> tuple[User, int]:
    user = await make_user(client)
    return user, (await make_task(client, user))["id"]


def _assert_full(response: httpx.Response) -> None:
    body = assert_error(response, 507)
    assert body["error"] == "Insufficient Storage"
    assert "Traceback" not in response.text


async def test_upload_to_a_full_disk_gives_507_leaves_no_temp_file_then_recovers(
    app_factory: Callable[..., Any], small_disk: Path
) -> None:
    uploads = small_disk / "uploads"
    async with app_factory(**LOCAL, upload_dir=uploads) as app, client_for(app) as client:
        user, task_id = await _owner_and_task(client)
        filler = _fill(small_disk)
        # Small: buffered, fails on the flush. Large: fails on a write, mid-stream.
        small = await upload(client, task_id, "small.png", PNG, headers=user.headers)
        large = await upload(
            client, task_id, "large.txt", repeated(b"a" * 65536, 200_000), headers=user.headers
        )
        for response in (small, large):
            _assert_full(response)
        assert _files_under(uploads) == []  # no temp file, no blob
        listed = await client.get(f"/tasks/{task_id}/files", headers=user.headers)
        assert listed.json() == []

        filler.unlink()  # space is freed: uploads work again
        again = await upload(client, task_id, "small.png", PNG, headers=user.headers)
        assert again.status_code == 201, again.text
        assert len(_files_under(uploads / "attachments")) == 1
        assert _files_under(uploads / ".tmp") == []


@pytest.fixture
def writes_hit_dev_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every upload's temp file is created as usual, but its bytes go to /dev/full, where the
    kernel fails each write with ENOSPC; the real temp file must not be left behind."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    real_mkstemp = tempfile.mkstemp  # storage.py looks it up at each upload

    def mkstemp_on_full_device(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_full_device)


@pytest.mark.usefixtures("writes_hit_dev_full")
async def test_upload_when_writes_fail_with_enospc_gives_507_and_leaves_no_temp_file(
    app_factory: Callable[..., Any], tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    async with app_factory(**LOCAL, upload_dir=uploads) as app, client_for(app) as client:
        user, task_id = await _owner_and_task(client)
        small = await upload(client, task_id, "small.png", PNG, headers=user.headers)
        large = await upload(
            client, task_id, "large.txt", repeated(b"a" * 65536, 200_000), headers=user.headers
        )
    for response in (small, large):
        _assert_full(response)
    assert _files_under(uploads) == []


async def _assert_storage_unavailable(
    app_factory: Callable[..., Any], upload_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with app_factory(**LOCAL, upload_dir=upload_dir) as app, client_for(app) as client:
        started = capsys.readouterr().out
        health = await client.get("/health")
        user, task_id = await _owner_and_task(client)
        response = await upload(client, task_id, "a.png", PNG, headers=user.headers)
        tasks = await client.get("/tasks", headers=user.headers)
    # One line at start-up names the setting, the folder and the problem.
    assert f"UPLOAD_DIR={upload_dir}" in started, started
    assert health.status_code == 503
    report = health.json()
    assert (report["status"], report["storage"], report["database"]) == (
        "unavailable",
        "unavailable",
        "ok",
    )
    body = assert_error(response, 503)
    assert body["error"] == "Service Unavailable"
    assert response.headers["Retry-After"].isdigit()
    assert tasks.status_code == 200  # everything else still works


async def test_read_only_upload_dir_is_reported_at_start_up_and_uploads_are_503(
    app_factory: Callable[..., Any], read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _assert_storage_unavailable(app_factory, read_only_dir, capsys)


async def test_missing_upload_dir_that_cannot_be_created_is_reported_and_uploads_are_503(
    app_factory: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    await _assert_storage_unavailable(app_factory, in_the_way / "uploads", capsys)


async def test_health_reports_storage_ok_and_creates_a_missing_upload_dir(
    app_factory: Callable[..., Any], tmp_path: Path
) -> None:
    uploads = tmp_path / "not-yet" / "uploads"
    async with app_factory(**LOCAL, upload_dir=uploads) as app, client_for(app) as client:
        health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["storage"] == "ok"
    assert (uploads / ".tmp").is_dir()
    assert (uploads / "attachments").is_dir()
