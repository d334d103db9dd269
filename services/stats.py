"""Task statistics: counted in SQL, cached per user.

The cache key carries the user's `data_version`, which every write bumps in its own transaction,
plus today's date (overdue counts change at midnight). A write therefore invalidates the cached
value on every instance at once, even while Redis is unreachable and cannot be told.

Reads run on an autocommit connection (`db_config.read_only`). A hit is one statement (the
data_version) and a cache read; a miss counts in one more statement that also returns the
data_version, so the counts are cached under exactly the version they were counted at.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import Date, Integer, bindparam, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db_models import Task, TaskTag, User
from exceptions import InvalidTokenError
from metrics import CACHE_RESULTS
from models import Priority, TaskStats
from redis_config import Cache
from services.task_filters import overdue_condition, today

logger = logging.getLogger(__name__)

_HITS = CACHE_RESULTS.labels("hit")
_MISSES = CACHE_RESULTS.labels("miss")
_DATA_VERSION = select(User.data_version).where(User.id == bindparam("user_id", type_=Integer))


_ON = bindparam("on", type_=Date)
_USER_ID = bindparam("user_id", type_=Integer)
_TOTALS = (
    select(
        func.count().label("total"),
        func.count().filter(Task.completed.is_(True)).label("completed"),
        func.count().filter(Task.priority == Priority.LOW.value).label("low"),
        func.count().filter(Task.priority == Priority.MEDIUM.value).label("medium"),
        func.count().filter(Task.priority == Priority.HIGH.value).label("high"),
        func.count().filter(overdue_condition(_ON)).label("overdue"),
    )
    .where(Task.user_id == _USER_ID)
    .subquery("totals")
)
# task_tags.user_id + ix_task_tags_user_id_tag: one index range, no join with tasks.
_TAG_COUNTS = (
    select(TaskTag.tag.label("tag"), func.count().label("tagged"))
    .where(TaskTag.user_id == _USER_ID)
    .group_by(TaskTag.tag)
    .subquery("tag_counts")
)
_USERS = User.__table__
# Built once: SQLAlchemy then reuses the cache key and the compiled SQL. One statement, so one
# snapshot: the counts are exactly those of the data_version it returns. A row per tag (one
# with a NULL tag when there are none); no row at all when the user no longer exists.
_STATS = (
    select(
        _USERS.c.data_version,
        *_TOTALS.c,
        _TAG_COUNTS.c.tag,
        _TAG_COUNTS.c.tagged,
    )
    .select_from(_USERS.outerjoin(_TOTALS, true()).outerjoin(_TAG_COUNTS, true()))
    .where(_USERS.c.id == _USER_ID)
    .order_by(_TAG_COUNTS.c.tag)
)


async def compute_stats(connection: AsyncConnection, *, user_id: int) -> tuple[int, TaskStats]:
    """The caller's statistics and the data_version they were counted at (one statement).
    A caller who no longer exists is a 401."""
    rows = (await connection.execute(_STATS, {"user_id": user_id, "on": today()})).all()
    if not rows:
        raise InvalidTokenError()
    first = rows[0]
    total, completed = int(first.total), int(first.completed)
    stats = TaskStats(
        total=total,
        completed=completed,
        incomplete=total - completed,
        completion_rate=round(completed / total, 4) if total else 0.0,
        by_priority={
            Priority.LOW: int(first.low),
            Priority.MEDIUM: int(first.medium),
            Priority.HIGH: int(first.high),
        },
        by_tag={row.tag: int(row.tagged) for row in rows if row.tag is not None},
        overdue=int(first.overdue),
    )
    return int(first.data_version), stats


def _key(user_id: int, data_version: int) -> str:
    return f"stats:{user_id}:{data_version}:{today().isoformat()}"


async def get_stats(
    engine: AsyncEngine, cache: Cache, *, user_id: int, ttl: int
) -> tuple[bytes, bool]:
    """The caller's statistics as the JSON of a TaskStats, and whether they came from the
    cache. A caller who no longer exists is a 401."""
    async with engine.connect() as connection:
        data_version = (
            await connection.execute(_DATA_VERSION, {"user_id": user_id})
        ).scalar_one_or_none()
    if data_version is None:
        raise InvalidTokenError()
    cached = await cache.get(_key(user_id, data_version))
    if cached is not None:
        try:
            # Checked, not re-serialised: the cached bytes are what model_dump_json wrote.
            TaskStats.model_validate_json(cached)
        except ValidationError:
            logger.warning("discarding unreadable cached stats user_id=%s", user_id)
        else:
            _HITS.inc()
            return cached, True
    _MISSES.inc()
    async with engine.connect() as connection:
        counted_at, stats = await compute_stats(connection, user_id=user_id)
    body = stats.model_dump_json().encode()
    # Stored under the version the counts belong to: a write since the first read moved it.
    await cache.set(_key(user_id, counted_at), body, ttl)
    return body, False
