"""Task statistics: counted in SQL, cached per user.

The cache key carries the user's `data_version`, which every write bumps in its own transaction,
plus today's date (overdue counts change at midnight). A write therefore invalidates the cached
value on every instance at once, even while Redis is unreachable and cannot be told.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db_models import Task, TaskTag, User
from metrics import CACHE_RESULTS
from models import Priority, TaskStats
from redis_config import Cache
from services.tasks import overdue_condition, today

logger = logging.getLogger(__name__)


async def compute_stats(session: AsyncSession, *, user_id: int) -> TaskStats:
    on = today()
    totals = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Task.completed.is_(True)),
                func.count().filter(Task.priority == Priority.LOW.value),
                func.count().filter(Task.priority == Priority.MEDIUM.value),
                func.count().filter(Task.priority == Priority.HIGH.value),
                func.count().filter(overdue_condition(on)),
            ).where(Task.user_id == user_id)
        )
    ).one()
    total, completed, low, medium, high, overdue = (int(value) for value in totals)
    tag_counts = await session.execute(
        select(TaskTag.tag, func.count())
        .join(Task, Task.id == TaskTag.task_id)
        .where(Task.user_id == user_id)
        .group_by(TaskTag.tag)
        .order_by(TaskTag.tag)
    )
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
    session: AsyncSession, cache: Cache, *, user: User, ttl: int
) -> tuple[TaskStats, bool]:
    """The caller's statistics and whether they came from the cache."""
    key = f"stats:{user.id}:{user.data_version}:{today().isoformat()}"
    cached = await cache.get(key)
    if cached is not None:
        try:
            stats = TaskStats.model_validate_json(cached)
            CACHE_RESULTS.labels("hit").inc()
            return stats, True
        except ValidationError:
            logger.warning("discarding unreadable cached stats user_id=%s", user.id)
    CACHE_RESULTS.labels("miss").inc()
    stats = await compute_stats(session, user_id=user.id)
    await cache.set(key, stats.model_dump_json().encode(), ttl)
    return stats, False
