"""Task use cases: each is one call into the statement layer (services.task_store) and the events
that record it (completion emails and blob cleanup are jobs derived from those), logged once."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from exceptions import BadRequestError, TagNotFoundError
from models import TaskCreate, TaskFilters
from services.access import Need, check_version
from services.task_store import TaskStore
from services.task_store_pg import PostgresTaskStore
from services.task_writes import TaskRow, Write

logger = logging.getLogger(__name__)


def store_for(engine: AsyncEngine) -> TaskStore:
    """The task store for this engine's database, chosen once when the app starts: the one
    place that looks at the dialect."""
    if engine.dialect.name == "postgresql":
        return PostgresTaskStore(engine)
    return TaskStore(engine)


async def list_tasks(
    store: TaskStore, *, user_id: int, filters: TaskFilters
) -> tuple[list[TaskRow], int]:
    return await store.list_page(user_id=user_id, filters=filters)


async def create_task(store: TaskStore, *, user_id: int, data: TaskCreate) -> TaskRow:
    task = await store.insert(user_id=user_id, data=data)
    logger.info("task created task_id=%s user_id=%s", task["id"], user_id)
    return task


async def update_task(
    store: TaskStore,
    *,
    user_id: int,
    task_id: int,
    changes: Mapping[str, Any],
    allowed_versions: frozenset[int] | None = None,
) -> TaskRow:
    """PATCH: only the fields sent are written, so concurrent PATCHes of different fields all
    persist; If-Match guards against lost updates (412); completing a task emails its owner (a job
    derived from its task.completed event)."""
    if not changes:  # nothing to write: the task as it is (and If-Match still applies)
        task = await store.read(user_id=user_id, task_id=task_id, need=Need.WRITE)
        check_version(task_id, task["version"], allowed_versions)
        return task
    written = await store.update(
        Write(user_id, [task_id], changes=changes, allowed=allowed_versions)
    )
    logger.info("task updated task_id=%s fields=%s", task_id, ",".join(sorted(changes)))
    return written[0]


async def bulk_update(
    store: TaskStore,
    *,
    user_id: int,
    task_ids: Sequence[int],
    changes: Mapping[str, Any],
) -> list[TaskRow]:
    """Apply one change to many tasks: all of them, or (any id not the caller's) none."""
    if not changes:
        raise BadRequestError("No fields to update were given")
    written = await store.update(Write(user_id, task_ids, changes=changes, bulk=True))
    logger.info("bulk update task_count=%s user_id=%s", len(written), user_id)
    return written


async def add_tags(
    store: TaskStore,
    *,
    user_id: int,
    task_id: int,
    tags: Sequence[str],
    allowed_versions: frozenset[int] | None = None,
) -> TaskRow:
    """Add tags; those already present are not doubled (all present: nothing is written)."""

    def edit(current: list[str]) -> list[str] | None:
        new = [tag for tag in dict.fromkeys(tags) if tag not in current]
        return current + new if new else None

    task = await _edit_tags(
        store, Write(user_id, [task_id], allowed=allowed_versions, edit_tags=edit)
    )
    logger.info("tags added task_id=%s", task_id)
    return task


async def remove_tag(
    store: TaskStore,
    *,
    user_id: int,
    task_id: int,
    tag: str,
    allowed_versions: frozenset[int] | None = None,
) -> TaskRow:
    """Remove one tag (404 when the task does not have it)."""

    def edit(current: list[str]) -> list[str]:
        if tag not in current:
            raise TagNotFoundError(task_id, tag)
        return [kept for kept in current if kept != tag]

    task = await _edit_tags(
        store, Write(user_id, [task_id], allowed=allowed_versions, edit_tags=edit)
    )
    logger.info("tag removed task_id=%s", task_id)
    return task


async def _edit_tags(store: TaskStore, write: Write) -> TaskRow:
    return (await store.update(write))[0]


async def delete_task(
    store: TaskStore,
    *,
    user_id: int,
    task_id: int,
    allowed_versions: frozenset[int] | None = None,
) -> None:
    """Delete the task; its file rows go with it (ON DELETE CASCADE), their blobs after (a
    job derived from its task.deleted event, which lists them)."""
    keys = await store.delete(user_id=user_id, task_id=task_id, allowed=allowed_versions)
    logger.info("task deleted task_id=%s user_id=%s files=%s", task_id, user_id, len(keys))
