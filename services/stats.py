"""Task statistics: counted in SQL, cached per user.

The cached value carries the user's `data_version` it was counted at; every write bumps that
version in its own transaction. A read sends one statement that returns the current version
and, only when it differs from the cached value's, the counts (the counting subqueries are gated
on it, so PostgreSQL skips them: a one-time filter). So a write invalidates the cached value on
every instance at once, even while Redis is unreachable and cannot be told, and a miss costs one
statement, not two. The key also names today's date (overdue counts change at midnight).

The statement runs as every read does (`TaskStore.fetch`: autocommit, on PostgreSQL on the
driver): one statement, one snapshot, so the counts are exactly those of the version it returns.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import Date, Integer, bindparam, func, select, true

from db_models import Task, TaskTag, User
from exceptions import InvalidTokenError
from metrics import CACHE_RESULTS
from models import Priority, TaskStats
from redis_config import Cache
from services.access import CALLER, caller_clause, caller_params
from services.task_filters import overdue_condition, today
from services.task_store import TaskStore

logger = logging.getLogger(__name__)

_HITS = CACHE_RESULTS.labels("hit")
_MISSES = CACHE_RESULTS.labels("miss")
_ON = bindparam("on", type_=Date)
_USER_ID = CALLER
# The version of the cached value (-1: none); the counts are only made when it is not current.
_KNOWN = bindparam("known", type_=Integer)
_USERS = User.metadata.tables[User.__tablename__]
_STALE = select(_USERS.c.data_version).where(_USERS.c.id == _USER_ID).scalar_subquery() != _KNOWN
_TOTALS = (
    select(
        func.count().label("total"),
        func.count().filter(Task.completed.is_(True)).label("completed"),
        func.count().filter(Task.priority == Priority.LOW.value).label("low"),
        func.count().filter(Task.priority == Priority.MEDIUM.value).label("medium"),
        func.count().filter(Task.priority == Priority.HIGH.value).label("high"),
        func.count().filter(overdue_condition(_ON)).label("overdue"),
    )
    .where(Task.user_id == _USER_ID, _STALE)
    .subquery("totals")
)
# task_tags.user_id + ix_task_tags_user_id_tag: one index range, no join with tasks.
_TAG_COUNTS = (
    select(TaskTag.tag.label("tag"), func.count().label("tagged"))
    .where(TaskTag.user_id == _USER_ID, _STALE)
    .group_by(TaskTag.tag)
    .subquery("tag_counts")
)
# Built once: SQLAlchemy then reuses the cache key and the compiled SQL. A row per tag (one
# with a NULL tag when there are none or the counts were skipped); no row at all when the user
# no longer exists.
_STATS = (
    select(
        _USERS.c.data_version,
        *_TOTALS.c,
        _TAG_COUNTS.c.tag,
        _TAG_COUNTS.c.tagged,
    )
    .select_from(_USERS.outerjoin(_TOTALS, true()).outerjoin(_TAG_COUNTS, true()))
    .where(caller_clause(_USERS))
    .order_by(_TAG_COUNTS.c.tag)
)


async def compute_stats(
    store: TaskStore, *, user_id: int, known: int = -1
) -> tuple[int, TaskStats | None]:
    """The user's data_version and, unless it is `known`, their statistics (one statement).
    A caller who no longer exists is a 401."""
    rows = await store.fetch(_STATS, caller_params(user_id, on=today(), known=known))
    if not rows:
        raise InvalidTokenError()
    first = rows[0]
    version = int(first["data_version"])
    if version == known:
        return version, None
    total, completed = int(first["total"]), int(first["completed"])
    stats = TaskStats(
        total=total,
        completed=completed,
        incomplete=total - completed,
        completion_rate=round(completed / total, 4) if total else 0.0,
        by_priority={
            Priority.LOW: int(first["low"]),
            Priority.MEDIUM: int(first["medium"]),
            Priority.HIGH: int(first["high"]),
        },
        by_tag={row["tag"]: int(row["tagged"]) for row in rows if row["tag"] is not None},
        overdue=int(first["overdue"]),
    )
    return version, stats


def _key(user_id: int) -> str:
    return f"stats:{user_id}:{today().isoformat()}"


def _cached(value: bytes | None) -> tuple[int, bytes]:
    """A cached value is `<data_version>` LF `<TaskStats JSON>`; anything else reads as none."""
    version, _, body = (value or b"").partition(b"\n")
    if not version.isdigit():
        return -1, b""
    try:
        TaskStats.model_validate_json(body)  # checked, not re-serialised
    except ValidationError:
        logger.warning("discarding unreadable cached stats")
        return -1, b""
    return int(version), body


async def get_stats(
    store: TaskStore, cache: Cache, *, user_id: int, ttl: int
) -> tuple[bytes, bool]:
    """The caller's statistics as the JSON of a TaskStats, and whether they came from the
    cache. A caller who no longer exists is a 401."""
    key = _key(user_id)
    known, body = _cached(await cache.get(key))
    version, stats = await compute_stats(store, user_id=user_id, known=known)
    if stats is None:
        _HITS.inc()
        return body, True
    _MISSES.inc()
    body = stats.model_dump_json().encode()
    await cache.set(key, b"%d\n%s" % (version, body), ttl)
    return body, False
