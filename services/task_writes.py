"""The words the statement layer (services.task_store, task_store_pg) and the use cases
(services.tasks) share: a task row as TaskRead's fields (`as_fields`, `as_task`, `as_shared`),
and what a write of tasks asks for (`Write`, `field_params`, `tag_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from exceptions import TooManyTagsError
from models import MAX_TAGS_PER_TASK, Priority

# TaskRead's fields, in TaskRead's order (the JSON keys come out in this order), then `version`.
READ_FIELDS = (
    "id", "title", "description", "completed", "priority", "created_at", "updated_at",
    "due_date", "tags", "user_id",
)  # fmt: skip
TaskRow = dict[str, Any]
TagEdit = Callable[[list[str]], list[str] | None]


def tag_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        tags: list[str] = orjson.loads(value)
        return tags
    return list(value)


def as_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row of `COLUMNS` (and `tags`, aggregated or a list) as TaskRead's fields, in order."""
    return {
        "id": row["id"], "title": row["title"], "description": row["description"],
        "completed": row["completed"], "priority": row["priority"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "due_date": row["due_date"], "tags": tag_list(row["tags"]), "user_id": row["user_id"],
    }  # fmt: skip


def as_task(row: Mapping[Any, Any]) -> TaskRow:
    """A row as a TaskRow: TaskRead's fields, then `version` (the ETag)."""
    task = as_fields(row)
    task["version"] = row["version"]
    return task


def as_shared(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row of a shared-with-me page as SharedTaskRead's fields, in order."""
    task = as_fields(row)
    task["permission"] = row["permission"]
    task["owner"] = {"id": row["user_id"], "username": row["owner_username"]}
    return task


@dataclass(frozen=True)
class Write:
    """One write of tasks: who, which, what. `changes` are the fields to set; or `edit_tags`
    derives a task's new tags from its current ones under the lock (None: nothing to write).
    `allowed` is If-Match's versions; `bulk` answers 404 for any id refused (a bulk body must
    not probe which ids exist)."""

    user_id: int
    task_ids: Sequence[int]
    changes: Mapping[str, Any] = field(default_factory=dict)
    allowed: frozenset[int] | None = None
    edit_tags: TagEdit | None = None
    bulk: bool = False


def field_params(changes: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The columns a change writes (sorted: one statement per shape) and their values."""
    fields = tuple(sorted(name for name in changes if name != "tags"))
    params = {f"set_{name}": changes[name] for name in fields}
    if "priority" in changes:
        params["set_priority"] = Priority(changes["priority"]).value
    return fields, params


def tag_rows(user_id: int, task_id: int, tags: Sequence[str]) -> list[dict[str, Any]]:
    if len(tags) > MAX_TAGS_PER_TASK:
        raise TooManyTagsError(task_id, MAX_TAGS_PER_TASK)
    return [
        {"task_id": task_id, "user_id": user_id, "tag": tag, "position": position}
        for position, tag in enumerate(tags)
    ]
