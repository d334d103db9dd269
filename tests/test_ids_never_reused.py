"""A deleted task's or file's id is never handed out again, on SQLite as on PostgreSQL.

SQLite gives a new row max(id) + 1 unless its table is AUTOINCREMENT (migration 0006), so
deleting the newest task and creating one used to bring the old id back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db_config import normalize_database_url
from tests.conftest import make_task, make_user, migrate
from tests.file_helpers import upload

TABLES = ("users", "tasks", "task_files")


async def test_delete_newest_task_then_create_gets_a_larger_id(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    newest = await make_task(client, user, title="newest")
    deleted = await client.delete(f"/tasks/{newest['id']}", headers=user.headers)
    assert deleted.status_code == 204
    created = await make_task(client, user, title="after the delete")
    assert created["id"] > newest["id"]


async def test_delete_newest_file_then_upload_gets_a_larger_id(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    first = await upload(client, task["id"], "a.txt", b"first", headers=user.headers)
    assert first.status_code == 201, first.text
    deleted = await client.delete(f"/files/{first.json()['id']}", headers=user.headers)
    assert deleted.status_code == 204
    second = await upload(client, task["id"], "b.txt", b"second", headers=user.headers)
    assert second.status_code == 201, second.text
    assert second.json()["id"] > first.json()["id"]


def _run(url: str, work: Callable[[Connection], Any]) -> Any:
    async def run() -> Any:
        engine = create_async_engine(normalize_database_url(url))
        async with engine.begin() as connection:
            value = await connection.run_sync(work)
        await engine.dispose()
        return value

    return asyncio.run(run())


def _reuses_ids(connection: Connection) -> dict[str, bool]:
    """Per table: insert two rows, delete the newest, insert again; was its id handed out?"""
    reused = {}
    now = "CURRENT_TIMESTAMP"
    rows = {
        "users": (
            "(username, email, hashed_password, created_at, data_version)",
            f"('u' || :n, :n || '@example.com', 'x', {now}, 0)",
        ),
        "tasks": (
            "(user_id, title, completed, priority, created_at, updated_at, version)",
            f"(:user_id, 't', false, 'low', {now}, {now}, 1)",
        ),
        "task_files": (
            "(task_id, storage_key, original_filename, content_type, file_size, sha256, "
            "uploaded_at)",
            f"(:task_id, 'k' || :n, 'f', 'text/plain', 1, 'h', {now})",
        ),
    }
    params: dict[str, Any] = {"user_id": None, "task_id": None}
    for n, table in enumerate(TABLES):
        columns, values = rows[table]
        ids = []
        for attempt in range(3):
            params["n"] = f"{table}{attempt}-{uuid.uuid4().hex[:8]}"
            insert = text(f"INSERT INTO {table} {columns} VALUES {values} RETURNING id")
            ids.append(connection.execute(insert, params).scalar_one())
            if attempt == 1:
                connection.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": ids[1]})
        reused[table] = ids[2] == ids[1]
        params["user_id" if n == 0 else "task_id"] = ids[0]
    return reused


def test_migration_0006_up_down_on_the_suites_database(empty_database: str) -> None:
    migrate(empty_database, "0005")
    before = _run(empty_database, _reuses_ids)
    migrate(empty_database)
    after = _run(empty_database, _reuses_ids)
    assert after == dict.fromkeys(TABLES, False)
    if empty_database.startswith("sqlite"):
        assert before == dict.fromkeys(TABLES, True)  # what 0006 fixes
    else:
        assert before == dict.fromkeys(TABLES, False)  # PostgreSQL never reused: 0006 a no-op
    migrate(empty_database, "0005", down=True)
    migrate(empty_database)
    assert _run(empty_database, _reuses_ids) == dict.fromkeys(TABLES, False)
