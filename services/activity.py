"""The activity log: the caller's visible events newest first (GET /activity), one task's whole
history (GET /activity/tasks/{id}) and counts by type (GET /activity/stats). All read from
`events` (services/events.py), nothing else records history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Integer, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db_models import User
from events_models import ActivityEntry, ActivityStats
from services.events import EVENTS, visible_to
from sharing_models import UserRef

_USERS = User.metadata.tables[User.__tablename__]
_CALLER = bindparam("activity_user", type_=Integer)


def _conditions(
    resource_type: str | None,
    action: str | None,
    start: datetime | None,
    end: datetime | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if resource_type is not None:
        where.append(EVENTS.c.type.startswith(f"{resource_type}."))
    if action is not None:
        where.append(EVENTS.c.type.endswith(f".{action}"))
    if start is not None:
        where.append(EVENTS.c.occurred_at >= start)
    if end is not None:
        where.append(EVENTS.c.occurred_at <= end)
    return where


def _entry(row: Any) -> ActivityEntry:
    resource_type, action = row.type.split(".", 1)
    actor = UserRef(id=row.actor_id, username=row.username) if row.username else None
    return ActivityEntry(
        id=row.id, actor=actor, action=action, resource_type=resource_type,
        resource_id=row.resource_id, task_id=row.task_id, changes=orjson.loads(row.data),
        created_at=row.occurred_at,
    )  # fmt: skip


async def _page(
    engine: AsyncEngine, where: list[ColumnElement[bool]], params: dict[str, Any], skip: int,
    limit: int,
) -> tuple[list[ActivityEntry], int]:  # fmt: skip
    page = (
        select(EVENTS, _USERS.c.username)
        .outerjoin(_USERS, _USERS.c.id == EVENTS.c.actor_id)
        .where(*where)
        .order_by(EVENTS.c.id.desc())
        .offset(skip)
        .limit(limit)
    )
    count = select(func.count()).select_from(EVENTS).where(*where)
    async with engine.connect() as connection:
        rows = (await connection.execute(page, params)).all()
        total = (await connection.execute(count, params)).scalar_one()
    return [_entry(row) for row in rows], int(total)


async def timeline(
    engine: AsyncEngine, *, user_id: int, resource_type: str | None, action: str | None,
    start: datetime | None, end: datetime | None, skip: int, limit: int,
) -> tuple[list[ActivityEntry], int]:  # fmt: skip
    """The events visible to the caller, newest first, filtered; and how many match."""
    where = [visible_to(_CALLER), *_conditions(resource_type, action, start, end)]
    return await _page(engine, where, {"activity_user": user_id}, skip, limit)


async def task_history(
    engine: AsyncEngine, *, task_id: int, skip: int, limit: int
) -> tuple[list[ActivityEntry], int]:
    """The task's whole history, newest first (the route checked the caller may read it)."""
    where = [EVENTS.c.task_id == task_id]
    return await _page(engine, where, {}, skip, limit)


async def stats(
    engine: AsyncEngine, *, user_id: int, start: datetime | None, end: datetime | None
) -> ActivityStats:
    """How many events visible to the caller there were of each type (in the period)."""
    where = [visible_to(_CALLER), *_conditions(None, None, start, end)]
    statement = select(EVENTS.c.type, func.count()).where(*where).group_by(EVENTS.c.type)
    async with engine.connect() as connection:
        rows = (await connection.execute(statement, {"activity_user": user_id})).all()
    by_type = {row[0]: int(row[1]) for row in sorted(rows)}
    return ActivityStats(total=sum(by_type.values()), by_type=by_type)
