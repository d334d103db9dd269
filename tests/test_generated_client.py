"""A client generated from the live `/openapi.json` by the pinned openapi-python-client drives the
whole API through a real uvicorn: what the schema says is what a generated client can do.

Headers go only as the operations' own parameters (If-Match, If-None-Match, Idempotency-Key),
never through the shared session, and every call raises on a status the schema does not list
(`raise_on_unexpected_status`).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from io import BytesIO
from types import ModuleType
from typing import Any

import pytest

from tests.file_helpers import PNG
from tests.live_server import BIN, migrated_server

PACKAGE = "tm_generated_client"


@pytest.fixture(scope="module")
def server(
    database_url: str, redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("generated-client-server")
    with migrated_server(tmp, database_url, redis_url) as base:
        yield base


@pytest.fixture(scope="module")
def api(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported: `api.op("tasks.create_task_tasks_post")` etc."""
    out = tmp_path_factory.mktemp("generated") / PACKAGE
    generated = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--url", f"{server}/openapi.json",
         "--output-path", str(out), "--meta", "none"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": f"{BIN}:/usr/bin:/bin"},  # its post hooks run ruff
    )  # fmt: skip
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout
    sys.path.insert(0, str(out.parent))
    try:
        yield _Generated(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(out.parent))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


class _Generated:
    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.models = importlib.import_module(f"{PACKAGE}.models")
        self.types = importlib.import_module(f"{PACKAGE}.types")

    def op(self, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{name}").sync_detailed


def _signed_up(api: Any, server: str) -> tuple[Any, str]:
    m = api.models
    name = f"gen_{uuid.uuid4().hex[:10]}"
    anonymous = api.package.Client(base_url=server, raise_on_unexpected_status=True)
    registered = api.op("auth.register_auth_register_post")(
        client=anonymous,
        body=m.UserCreate(username=name, email=f"{name}@example.com", password="correct-horse"),
    )
    assert registered.status_code == 201, registered.content
    login = api.op("auth.login_auth_login_post")(
        client=anonymous, body=m.LoginRequest(username=name, password="correct-horse")
    )
    assert login.status_code == 200
    client = api.package.AuthenticatedClient(
        base_url=server, token=login.parsed.access_token, raise_on_unexpected_status=True
    )

    return client, name


def _created_and_listed(api: Any, client: Any, name: str) -> list[int]:
    m = api.models
    # Idempotent create: the retry is the stored answer; the key never reaches a later call.
    create = api.op("tasks.create_task_tasks_post")
    report = m.TaskCreate(
        title="Write report", priority=m.Priority.HIGH, due_date=date(2030, 1, 31), tags=["work"]
    )
    first = create(client=client, body=report, idempotency_key=f"{name}-create")
    again = create(client=client, body=report, idempotency_key=f"{name}-create")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.parsed.id == first.parsed.id
    assert first.parsed.due_date == date(2030, 1, 31)
    others = [create(client=client, body=m.TaskCreate(title=f"task {i}")) for i in range(3)]
    assert [o.status_code for o in others] == [201] * 3
    assert "Idempotent-Replayed" not in others[0].headers
    ids = [first.parsed.id, *(o.parsed.id for o in others)]

    # List with filters and paging headers.
    listing = api.op("tasks.list_tasks_tasks_get")
    page = listing(client=client, limit=2, skip=2, sort_by=m.SortField.ID)
    assert [t.id for t in page.parsed] == ids[2:4]
    assert page.headers["X-Total-Count"] == "4"
    assert 'rel="prev"' in page.headers["Link"]
    filtered = listing(client=client, priority=m.Priority.HIGH, tag="work", search="report")
    assert [t.id for t in filtered.parsed] == [first.parsed.id]

    return ids


def _conditional_writes_and_tags(api: Any, client: Any, task_id: int) -> None:
    m = api.models
    # Conditional GET and PATCH: If-None-Match / If-Match as parameters, nothing leaks.
    fetched = api.op("tasks.get_task_tasks_task_id_get")(task_id, client=client)
    etag = fetched.headers["ETag"]
    unchanged = api.op("tasks.get_task_tasks_task_id_get")(
        task_id, client=client, if_none_match=etag
    )
    assert unchanged.status_code == 304
    patch = api.op("tasks.update_task_tasks_task_id_patch")
    updated = patch(task_id, client=client, body=m.TaskUpdate(title="Report v2"), if_match=etag)
    assert updated.status_code == 200
    assert updated.parsed.title == "Report v2"
    assert updated.parsed.priority == m.Priority.HIGH  # the one field sent changed, no other
    stale = patch(task_id, client=client, body=m.TaskUpdate(title="lost"), if_match=etag)
    assert stale.status_code == 412
    plain = patch(task_id, client=client, body=m.TaskUpdate(completed=True))
    assert plain.status_code == 200
    assert plain.parsed.title == "Report v2"
    assert plain.parsed.completed is True

    # Tags, one with "/" (a path segment the client must percent-encode).
    tagged = api.op("tasks.add_tags_tasks_task_id_tags_post")(
        task_id, client=client, body=["q3/finance", "urgent"]
    )
    assert tagged.parsed.tags == ["work", "q3/finance", "urgent"]
    untagged = api.op("tasks.remove_tag_tasks_task_id_tags_tag_delete")(
        task_id, "q3/finance", client=client, if_match=tagged.headers["ETag"]
    )
    assert untagged.status_code == 200
    assert untagged.parsed.tags == ["work", "urgent"]


def _bulk_and_stats(api: Any, client: Any, name: str, ids: list[int]) -> None:
    m = api.models
    # Bulk, idempotent, then the statistics.
    bulk = api.op("tasks.bulk_update_tasks_tasks_bulk_patch")(
        client=client,
        body=m.BulkUpdate(task_ids=ids[1:], updates=m.TaskUpdate(priority=m.Priority.LOW)),
        idempotency_key=f"{name}-bulk",
    )
    assert bulk.status_code == 200
    assert {t.priority for t in bulk.parsed} == {m.Priority.LOW}
    stats = api.op("tasks.get_stats_tasks_stats_get")(client=client)
    assert stats.headers["X-Cache"] in {"HIT", "MISS"}
    assert (stats.parsed.total, stats.parsed.completed) == (4, 1)
    assert stats.parsed.by_priority.additional_properties == {"low": 3, "medium": 0, "high": 1}


def _files_and_delete(api: Any, client: Any, name: str, task_id: int) -> None:
    m = api.models
    # Upload and download: the same bytes back, whatever the stored type.
    upload_body = m.UploadFileTasksTaskIdFilesPostBody(
        file=api.types.File(payload=BytesIO(PNG), file_name="chart.png", mime_type="image/png")
    )
    uploaded = api.op("files.upload_file_tasks_task_id_files_post")(
        task_id, client=client, body=upload_body, idempotency_key=f"{name}-upload"
    )
    assert uploaded.status_code == 201
    assert uploaded.parsed.file_size == len(PNG)
    downloaded = api.op("files.download_file_files_file_id_get")(uploaded.parsed.id, client=client)
    assert downloaded.status_code == 200
    assert downloaded.parsed.payload.read() == PNG
    assert downloaded.headers["Content-Type"] == "image/png"
    assert "chart.png" in downloaded.headers["Content-Disposition"]

    # Delete: the file, then the task (If-Match).
    deleted_file = api.op("files.delete_file_files_file_id_delete")(
        uploaded.parsed.id, client=client
    )
    assert deleted_file.status_code == 204
    current = api.op("tasks.get_task_tasks_task_id_get")(task_id, client=client).headers["ETag"]
    deleted = api.op("tasks.delete_task_tasks_task_id_delete")(
        task_id, client=client, if_match=current
    )
    assert deleted.status_code == 204
    gone = api.op("tasks.get_task_tasks_task_id_get")(task_id, client=client)
    assert gone.status_code == 404
    assert isinstance(gone.parsed, m.ErrorBody)


def test_generated_client_drives_the_whole_flow_with_headers_as_parameters(
    api: Any, server: str
) -> None:
    client, name = _signed_up(api, server)
    ids = _created_and_listed(api, client, name)
    _conditional_writes_and_tags(api, client, ids[0])
    _bulk_and_stats(api, client, name, ids)
    _files_and_delete(api, client, name, ids[0])
