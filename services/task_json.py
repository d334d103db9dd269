"""The one serialiser of a task: TaskRows (services.task_store) as TaskRead's JSON bytes.

Byte for byte what `TaskRead.model_dump_json()` writes (tests/test_task_serialiser.py pins it on
both databases), without validating what the database already typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from services.task_writes import READ_FIELDS


def _read_fields(task: Mapping[str, Any]) -> Mapping[str, Any]:
    # A page's rows are TaskRead's fields already (list_page); a TaskRow also has `version`.
    return {name: task[name] for name in READ_FIELDS} if "version" in task else task


def task_json(task: Mapping[str, Any]) -> bytes:
    """A task as the JSON body of a TaskRead: byte for byte what `TaskRead.model_dump_json()`
    writes (UTC as "Z", dates ISO), without validating what the database already typed."""
    return orjson.dumps(_read_fields(task), option=orjson.OPT_UTC_Z)


def tasks_json(tasks: Iterable[Mapping[str, Any]]) -> bytes:
    """A JSON array of TaskReads (see `task_json`)."""
    return orjson.dumps([_read_fields(task) for task in tasks], option=orjson.OPT_UTC_Z)


def shared_tasks_json(tasks: Iterable[Mapping[str, Any]]) -> bytes:
    """A JSON array of SharedTaskReads: a shared-with-me page's rows (`task_writes.as_shared`)
    are already its fields, in its order (pinned like `task_json`)."""
    return orjson.dumps(list(tasks), option=orjson.OPT_UTC_Z)
