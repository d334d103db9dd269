"""Sharing use cases: share a task, list, change and remove its shares, and the tasks shared
with the caller. Who may do each is decided before these run (the route's OwnedTask or
ReadableTask, and `access.check_share_removal`); what a share allows is `access.task_clause`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Integer, String, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from db_models import TaskShare, UTCDateTime, utcnow
from event_tables import EventType
from exceptions import BadRequestError, ConflictError, ResourceNotFoundError, TaskNotFoundError
from models import TaskFilters
from services import event_writes
from services.access import check_share_removal
from services.task_store import TASKS, USERS, TaskStore
from services.task_writes import TaskRow
from sharing_models import ShareRead, UserRef

logger = logging.getLogger(__name__)

SHARES = TaskShare.metadata.tables[TaskShare.__tablename__]
_TASK: BindParameter[int] = bindparam("the_task", type_=Integer)
_RECIPIENT: BindParameter[int] = bindparam("the_recipient", type_=Integer)
_PERMISSION: BindParameter[str] = bindparam("new_permission", type_=String)
# The named user. Names are one regardless of case (uq_users_username_lower): `Alice` finds
# alice.
_NAME = func.lower(USERS.c.username) == func.lower(bindparam("username", type_=String))
_USER_ID = select(USERS.c.id, USERS.c.username).where(_NAME)
# Inserts nothing when the task was deleted meanwhile (404); a second share is the key's 409.
_INSERT = insert(SHARES).from_select(
    ["task_id", "user_id", "permission", "created_at"],
    select(TASKS.c.id, _RECIPIENT, _PERMISSION, bindparam("now", type_=UTCDateTime)).where(
        TASKS.c.id == _TASK
    ),
)
_LIST = (
    select(SHARES.c.task_id, SHARES.c.permission, SHARES.c.created_at, USERS.c.id, USERS.c.username)
    .join(USERS, USERS.c.id == SHARES.c.user_id)
    .where(SHARES.c.task_id == _TASK)
    .order_by(SHARES.c.created_at, SHARES.c.user_id)
)
_THE_SHARE = (SHARES.c.task_id == _TASK, SHARES.c.user_id == _RECIPIENT)
_UPDATE = (
    update(SHARES).where(*_THE_SHARE).values(permission=_PERMISSION).returning(SHARES.c.created_at)
)
_DELETE = delete(SHARES).where(*_THE_SHARE).returning(SHARES.c.permission)
_OLD = select(SHARES.c.permission).where(*_THE_SHARE).with_for_update()


def share_read(row: Mapping[str, Any]) -> ShareRead:
    """The one serialiser of a share: a row with the task, the recipient and the permission."""
    return ShareRead(
        task_id=row["task_id"],
        shared_with=UserRef(id=row["id"], username=row["username"]),
        permission=row["permission"],
        created_at=row["created_at"],
    )


def _no_user(username: str) -> ResourceNotFoundError:
    return ResourceNotFoundError(f"No user is named '{username}'", username=username)


async def share_task(
    store: TaskStore,
    *,
    task: TaskRow,
    username: str,
    permission: str,
) -> ShareRead:
    """Share the caller's task with a user by name: 400 with yourself, 404 no such user, 409
    already shared with them. Both are emailed (as their preferences allow) by jobs derived
    from the share.created event."""
    task_id, owner_id = task["id"], task["user_id"]
    now = utcnow()
    async with store.engine.begin() as connection:
        named = (await connection.execute(_USER_ID, {"username": username})).first()
        if named is None:
            raise _no_user(username)
        recipient = dict(named._mapping)
        if recipient["id"] == owner_id:
            raise BadRequestError("A task cannot be shared with its owner", field="username")
        values = {"the_task": task_id, "the_recipient": recipient["id"]}
        values.update(new_permission=permission, now=now)
        try:
            inserted = await connection.execute(_INSERT, values)
        except IntegrityError:
            raise ConflictError(
                f"Task {task_id} is already shared with '{username}'", task_id=task_id
            ) from None
        if inserted.rowcount == 0:
            raise TaskNotFoundError(task_id)
        event = event_writes.share_event(
            EventType.SHARE_CREATED, owner_id, owner_id, task_id, recipient, permission
        )
        await event_writes.record(connection, [event], now)
    logger.info("task shared task_id=%s user_id=%s", task_id, recipient["id"])
    row = {**recipient, "task_id": task_id, "permission": permission, "created_at": now}
    return share_read(row)


async def list_shares(store: TaskStore, *, task_id: int) -> list[ShareRead]:
    rows = await store.fetch(_LIST, {"the_task": task_id})
    return [share_read(row) for row in rows]


async def _user(store: TaskStore, username: str) -> dict[str, Any]:
    rows = await store.fetch(_USER_ID, {"username": username})
    if not rows:
        raise _no_user(username)
    return {"id": rows[0]["id"], "username": rows[0]["username"]}


def _no_share(task_id: int, username: str) -> ResourceNotFoundError:
    message = f"Task {task_id} is not shared with '{username}'"
    return ResourceNotFoundError(message, task_id=task_id, username=username)


async def update_share(
    store: TaskStore, *, task: TaskRow, username: str, permission: str
) -> ShareRead:
    """Change what a share allows (404: no such user, or not shared with them). A change is
    recorded as share.created with `changes` (the event types have no share.updated)."""
    task_id, owner_id = task["id"], task["user_id"]
    person = await _user(store, username)
    recipient = person["id"]
    params = {"the_task": task_id, "the_recipient": recipient, "new_permission": permission}
    async with store.engine.begin() as connection:
        old = (await connection.execute(_OLD, params)).scalar_one_or_none()
        created = (await connection.execute(_UPDATE, params)).scalar_one_or_none()
        if created is None:
            raise _no_share(task_id, username)
        if old != permission:
            changes = {"permission": {"old": old, "new": permission}}
            event = event_writes.share_event(
                EventType.SHARE_CREATED, owner_id, owner_id, task_id, person, permission, changes
            )
            await event_writes.record(connection, [event], utcnow())
    logger.info("share changed task_id=%s user_id=%s", task_id, recipient)
    row = {"task_id": task_id, "id": recipient, "username": person["username"]}
    return share_read({**row, "permission": permission, "created_at": created})


async def delete_share(store: TaskStore, *, task: TaskRow, user_id: int, username: str) -> None:
    """Remove a share: the owner any, a recipient their own (leaving the task)."""
    person = await _user(store, username)
    recipient = person["id"]
    check_share_removal(task["id"], owner=task["user_id"], recipient=recipient, caller=user_id)
    async with store.engine.begin() as connection:
        params = {"the_task": task["id"], "the_recipient": recipient}
        permission = (await connection.execute(_DELETE, params)).scalar_one_or_none()
        if permission is None:
            raise _no_share(task["id"], username)
        event = event_writes.share_event(
            EventType.SHARE_DELETED, user_id, task["user_id"], task["id"], person, permission
        )
        await event_writes.record(connection, [event], utcnow())
    logger.info("share removed task_id=%s user_id=%s", task["id"], recipient)


async def list_shared_with_me(
    store: TaskStore, *, user_id: int, filters: TaskFilters
) -> tuple[list[TaskRow], int]:
    return await store.list_page(user_id=user_id, filters=filters, own=False)
