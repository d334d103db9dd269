"""Comment use cases: comment on a task, list its comments, edit or delete one. Who may is
decided before these run: the route's ReadableTask, or the comment's own verdict
(`load_comment`, by `access.comment_clause`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import Executable, Integer, String, bindparam, delete, func, select, true, update

from db_models import TaskComment, UTCDateTime, utcnow
from event_tables import EventType
from exceptions import ResourceNotFoundError, TaskNotFoundError
from services import event_writes
from services.access import (
    CALLER,
    Need,
    caller_clause,
    caller_params,
    comment_clause,
    decide_comment,
)
from services.task_store import TASKS, USERS, TaskStore
from services.task_writes import TaskRow
from sharing_models import CommentRead, Paging, UserRef

logger = logging.getLogger(__name__)

COMMENTS = TaskComment.metadata.tables[TaskComment.__tablename__]
_FIELDS = ("id", "task_id", "author_id", "content", "created_at", "updated_at")
_TASK = bindparam("the_task", type_=Integer)
_COMMENT = bindparam("the_comment", type_=Integer)
_AUTHORS = USERS.alias("author")
_CONTENT = bindparam("new_content", type_=String)
_NOW = bindparam("now", type_=UTCDateTime)
# Inserts nothing when the task was deleted meanwhile (404).
_INSERT = (
    COMMENTS.insert()
    .from_select(
        ["task_id", "author_id", "content", "created_at", "updated_at"],
        select(TASKS.c.id, CALLER, _CONTENT, _NOW, _NOW)
        .where(TASKS.c.id == _TASK),
    )
    .returning(*(COMMENTS.c[name] for name in _FIELDS))
)  # fmt: skip
# The author's name, for the answer and the event.
_AUTHOR = select(USERS.c.username).where(USERS.c.id == CALLER)
_PAGE = (
    select(*(COMMENTS.c[name] for name in _FIELDS), _AUTHORS.c.username.label("author_name"))
    .join(_AUTHORS, _AUTHORS.c.id == COMMENTS.c.author_id)
    .where(COMMENTS.c.task_id == _TASK)
    .order_by(COMMENTS.c.id)
    .offset(bindparam("skip", type_=Integer))
    .limit(bindparam("limit", type_=Integer))
    .subquery("page")
)
_TOTAL = select(func.count()).where(COMMENTS.c.task_id == _TASK).scalar_subquery()
# A page and the task's comment count in one statement; the caller's row keeps one row when
# the page is empty (the route's ReadableTask already proved the caller exists).
_LIST = (
    select(_TOTAL.label("total"), *_PAGE.c)
    .select_from(USERS.outerjoin(_PAGE, true()))
    .where(caller_clause(USERS))
    .order_by(_PAGE.c.id)
)
_UPDATE = (
    update(COMMENTS)
    .where(COMMENTS.c.id == _COMMENT)
    .values(content=_CONTENT, updated_at=_NOW)
    .returning(*(COMMENTS.c[name] for name in _FIELDS))
)
_DELETE = delete(COMMENTS).where(COMMENTS.c.id == _COMMENT)


@cache
def _verdict(need: Need) -> Executable:
    """The caller's row outer-joined to the comment (with its task and author), and whether
    `comment_clause(need)` allows it: 401, 404 and 403 told apart in one read."""
    target = COMMENTS.join(TASKS, TASKS.c.id == COMMENTS.c.task_id).join(
        _AUTHORS, _AUTHORS.c.id == COMMENTS.c.author_id
    )
    return (
        select(
            USERS.c.id.label("caller"),
            comment_clause(need).label("allowed"),
            *(COMMENTS.c[name] for name in _FIELDS),
            _AUTHORS.c.username.label("author_name"),
            TASKS.c.user_id.label("owner_id"),
        )
        .select_from(USERS.outerjoin(target, COMMENTS.c.id == _COMMENT))
        .where(caller_clause(USERS))
    )


def comment_read(row: Mapping[str, Any]) -> CommentRead:
    """The one serialiser of a comment: a comment row with its author's name."""
    return CommentRead(
        id=row["id"],
        task_id=row["task_id"],
        author=UserRef(id=row["author_id"], username=row["author_name"]),
        content=row["content"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def load_comment(
    store: TaskStore, *, user_id: int, comment_id: int, need: Need
) -> Mapping[str, Any]:
    """The comment, if the caller may change (WRITE) or delete (OWNER) it: else 401/404/403."""
    rows = await store.fetch(_verdict(need), caller_params(user_id, the_comment=comment_id))
    row = rows[0] if rows else None
    decide_comment(row, comment_id=comment_id)
    assert row is not None
    return row


async def create_comment(
    store: TaskStore,
    *,
    task: TaskRow,
    user_id: int,
    content: str,
) -> CommentRead:
    """Comment on a task the caller can read; its owner is emailed when someone else did (a
    job derived from the comment.created event)."""
    task_id, owner_id = task["id"], task["user_id"]
    params = {"the_caller": user_id, "the_task": task_id, "new_content": content, "now": utcnow()}
    async with store.engine.begin() as connection:
        row = (await connection.execute(_INSERT, params)).mappings().first()
        if row is None:
            raise TaskNotFoundError(task_id)
        author = (await connection.execute(_AUTHOR, {"the_caller": user_id})).scalar_one()
        read = comment_read({**row, "author_name": author})
        event = event_writes.comment_event(
            EventType.COMMENT_CREATED, user_id, owner_id, task_id, row["id"],
            read.model_dump_json().encode(),
        )  # fmt: skip
        await event_writes.record(connection, [event], params["now"])
    logger.info("comment created comment_id=%s task_id=%s", row["id"], task_id)
    return read


async def list_comments(
    store: TaskStore, *, user_id: int, task_id: int, paging: Paging
) -> tuple[list[CommentRead], int]:
    """A page of the task's comments, oldest first, and how many it has."""
    params = caller_params(user_id, the_task=task_id, skip=paging.skip, limit=paging.limit)
    rows = await store.fetch(_LIST, params)
    total = int(rows[0]["total"]) if rows else 0
    return [comment_read(row) for row in rows if row["id"] is not None], total


def _gone(comment_id: int) -> ResourceNotFoundError:
    message = f"Comment with ID {comment_id} not found"
    return ResourceNotFoundError(message, comment_id=comment_id)


async def update_comment(
    store: TaskStore, *, comment: Mapping[str, Any], content: str
) -> CommentRead:
    """Change the text of the caller's comment (404 if deleted meanwhile)."""
    params = {"the_comment": comment["id"], "new_content": content, "now": utcnow()}
    async with store.engine.begin() as connection:
        row = (await connection.execute(_UPDATE, params)).mappings().first()
        if row is None:
            raise _gone(comment["id"])
        read = comment_read({**row, "author_name": comment["author_name"]})
        if comment["content"] != content:
            changes = {"content": {"old": comment["content"], "new": content}}
            event = event_writes.comment_event(
                EventType.COMMENT_UPDATED, comment["author_id"], comment["owner_id"],
                row["task_id"], row["id"], read.model_dump_json().encode(), changes,
            )  # fmt: skip
            await event_writes.record(connection, [event], params["now"])
    logger.info("comment updated comment_id=%s", comment["id"])
    return read


async def delete_comment(store: TaskStore, *, comment: Mapping[str, Any], actor_id: int) -> None:
    async with store.engine.begin() as connection:
        deleted = await connection.execute(_DELETE, {"the_comment": comment["id"]})
        if deleted.rowcount == 0:
            raise _gone(comment["id"])
        event = event_writes.comment_event(
            EventType.COMMENT_DELETED, actor_id, comment["owner_id"], comment["task_id"],
            comment["id"],
        )  # fmt: skip
        await event_writes.record(connection, [event], utcnow())
    logger.info("comment deleted comment_id=%s", comment["id"])
