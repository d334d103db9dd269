"""What a write of tasks asks for (`Write`) and what it did (`Written`): the words the statement
layer (services.task_store, task_store_pg) and the use cases (services.tasks) share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TaskRow = dict[str, Any]
TagEdit = Callable[[list[str]], list[str] | None]


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


@dataclass(frozen=True)
class Owner:
    """An owner of written tasks, as the data_version bump returned them: for the completion
    email, which they may have turned off."""

    username: str
    email: str
    completion_mail: bool


@dataclass
class Written:
    """What a write did: the tasks as they are now, which of them it completed, and their
    owners by id (an editor's bulk write can span several)."""

    tasks: list[TaskRow]
    completed_now: list[TaskRow] = field(default_factory=list)
    owners: Mapping[int, Owner] = field(default_factory=dict)
