"""Task statistics: counted in SQL, cached per user.

The cache key carries the user's `data_version`, which every write bumps in its own transaction,
plus today's date (overdue counts change at midnight). A write therefore invalidates the cached
value on every instance at once, even while Redis is unreachable and cannot be told.

Reads run on an autocommit connection (`db_config.read_only`): the data_version is read first,
so counts that a concurrent write already changed can only land under a key nobody asks for
again, never under the write's new key.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import Date, Integer, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db_models import Task, TaskTag, User
from exceptions import InvalidTokenError
from metrics import CACHE_RESULTS
from models import Priority, TaskStats
from redis_config import Cache
from services.tasks import overdue_condition, today

logger = logging.getLogger(__name__)

_HITS = CACHE_RESULTS.labels("hit")
_MISSES = CACHE_RESULTS.labels("miss")
_DATA_VERSION = select(User.data_version).where(User.id == bindparam("user_id", type_=Integer))


_ON = bindparam("on", type_=Date)
_USER_ID = bindparam("user_id", type_=Integer)
# Built once: SQLAlchemy then reuses the cache keys and the compiled SQL.
_TOTALS = select(
    func.count(),
    func.count().filter(Task.completed.is_(True)),
    func.count().filter(Task.priority == Priority.LOW.value),
    func.count().filter(Task.priority == Priority.MEDIUM.value),
    func.count().filter(Task.priority == Priority.HIGH.value),
    func.count().filter(overdue_condition(_ON)),
).where(Task.user_id == _USER_ID)
# task_tags.user_id + ix_task_tags_user_id_tag: one index range, no join with tasks.
_TAG_COUNTS = (
    select(TaskTag.tag, func.count())
    .where(TaskTag.user_id == _USER_ID)
    .group_by(TaskTag.tag)
    .order_by(TaskTag.tag)
)


async def compute_stats(connection: AsyncConnection, *, user_id: int) -> TaskStats:
    totals = (await connection.execute(_TOTALS, {"user_id": user_id, "on": today()})).one()
    total, completed, low, medium, high, overdue = (int(value) for value in totals)
    tag_counts = await connection.execute(_TAG_COUNTS, {"user_id": user_id})
    return TaskStats(
        total=total,
        completed=completed,
        incomplete=total - completed,
        completion_rate=round(completed / total, 4) if total else 0.0,
        by_priority={Priority.LOW: low, Priority.MEDIUM: medium, Priority.HIGH: high},
        by_tag={tag: int(count) for tag, count in tag_counts},
        overdue=overdue,
    )


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
    key = f"stats:{user_id}:{data_version}:{today().isoformat()}"
    cached = await cache.get(key)
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
        stats = await compute_stats(connection, user_id=user_id)
    body = stats.model_dump_json().encode()
    await cache.set(key, body, ttl)
    return body, False
