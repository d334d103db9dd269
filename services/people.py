"""Finding people to share with, and each user's notification preferences."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, select, update

from exceptions import InvalidTokenError
from services.access import CALLER
from services.task_filters import escape_like
from services.task_store import USERS, TaskStore
from sharing_models import NotificationPreferences, UserRef, UserSearch

logger = logging.getLogger(__name__)

# Usernames are ASCII (models.Username), so lower() means the same in Python and in SQL.
_SEARCH = (
    select(USERS.c.id, USERS.c.username)
    .where(func.lower(USERS.c.username).like(bindparam("prefix", type_=String), escape="\\"))
    .order_by(func.lower(USERS.c.username), USERS.c.id)
    .limit(bindparam("limit", type_=Integer))
)
# The API's names for the users.notify_* columns.
_PREFERENCES = {
    "email_enabled": USERS.c.notify_email,
    "task_shared_with_me": USERS.c.notify_task_shared_with_me,
    "task_completed": USERS.c.notify_task_completed,
    "comment_on_my_task": USERS.c.notify_comment_on_my_task,
}
_LABELLED = [column.label(name) for name, column in _PREFERENCES.items()]
_READ = select(*_LABELLED).where(USERS.c.id == CALLER)


async def search_users(store: TaskStore, *, search: UserSearch) -> list[UserRef]:
    """Users whose name starts with the query, any case (LIKE's wildcards taken literally)."""
    prefix = escape_like(search.query.lower()) + "%"
    rows = await store.fetch(_SEARCH, {"prefix": prefix, "limit": search.limit})
    return [UserRef(id=row["id"], username=row["username"]) for row in rows]


def _preferences(row: Mapping[Any, Any] | None) -> NotificationPreferences:
    """The one serialiser of the preferences (401: the caller is gone)."""
    if row is None:
        raise InvalidTokenError()
    return NotificationPreferences.model_validate(dict(row))


async def get_preferences(store: TaskStore, *, user_id: int) -> NotificationPreferences:
    rows = await store.fetch(_READ, {"the_caller": user_id})
    return _preferences(rows[0] if rows else None)


async def update_preferences(
    store: TaskStore, *, user_id: int, changes: Mapping[str, bool]
) -> NotificationPreferences:
    """Set the preferences sent; the others stay as they are."""
    if not changes:
        return await get_preferences(store, user_id=user_id)
    values = {_PREFERENCES[name].key: value for name, value in changes.items()}
    statement = update(USERS).where(USERS.c.id == CALLER).values(values).returning(*_LABELLED)
    async with store.engine.begin() as connection:
        row = (await connection.execute(statement, {"the_caller": user_id})).mappings().first()
    logger.info("notification preferences changed user_id=%s", user_id)
    return _preferences(row)
