"""Finding people to share with, and each user's notification preferences."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, select, true, update

from exceptions import InvalidTokenError
from services.access import caller_clause, caller_params
from services.task_filters import escape_like
from services.task_store import USERS, TaskStore
from sharing_models import NotificationPreferences, UserRef, UserSearch

logger = logging.getLogger(__name__)

# Usernames are ASCII (models.Username), so lower() means the same in Python and in SQL. The
# matches are outer-joined to the caller's row, so a revoked session or token finds no row (401)
# and a search that matches no one still finds the caller's.
_MATCHES = (
    select(USERS.c.id, USERS.c.username)
    .where(func.lower(USERS.c.username).like(bindparam("prefix", type_=String), escape="\\"))
    .order_by(func.lower(USERS.c.username), USERS.c.id)
    .limit(bindparam("limit", type_=Integer))
    .subquery("matches")
)
_CALLER = USERS.alias("caller")
_SEARCH = (
    select(_CALLER.c.id.label("caller"), _MATCHES.c.id, _MATCHES.c.username)
    .select_from(_CALLER.outerjoin(_MATCHES, true()))
    .where(caller_clause(_CALLER))
    .order_by(func.lower(_MATCHES.c.username), _MATCHES.c.id)
)
# The API's names for the users.notify_* columns.
_PREFERENCES = {
    "email_enabled": USERS.c.notify_email,
    "task_shared_with_me": USERS.c.notify_task_shared_with_me,
    "task_completed": USERS.c.notify_task_completed,
    "comment_on_my_task": USERS.c.notify_comment_on_my_task,
}
_LABELLED = [column.label(name) for name, column in _PREFERENCES.items()]
_READ = select(*_LABELLED).where(caller_clause(USERS))


async def search_users(store: TaskStore, *, user_id: int, search: UserSearch) -> list[UserRef]:
    """Users whose name starts with the query, any case (LIKE's wildcards taken literally)."""
    prefix = escape_like(search.query.lower()) + "%"
    rows = await store.fetch(_SEARCH, caller_params(user_id, prefix=prefix, limit=search.limit))
    if not rows:
        raise InvalidTokenError()
    return [UserRef(id=row["id"], username=row["username"]) for row in rows if row["id"]]


def _preferences(row: Mapping[Any, Any] | None) -> NotificationPreferences:
    """The one serialiser of the preferences (401: the caller is gone)."""
    if row is None:
        raise InvalidTokenError()
    return NotificationPreferences.model_validate(dict(row))


async def get_preferences(store: TaskStore, *, user_id: int) -> NotificationPreferences:
    rows = await store.fetch(_READ, caller_params(user_id))
    return _preferences(rows[0] if rows else None)


async def update_preferences(
    store: TaskStore, *, user_id: int, changes: Mapping[str, bool]
) -> NotificationPreferences:
    """Set the preferences sent; the others stay as they are."""
    if not changes:
        return await get_preferences(store, user_id=user_id)
    values = {_PREFERENCES[name].key: value for name, value in changes.items()}
    statement = update(USERS).where(caller_clause(USERS)).values(values).returning(*_LABELLED)
    async with store.engine.begin() as connection:
        row = (await connection.execute(statement, caller_params(user_id))).mappings().first()
    logger.info("notification preferences changed user_id=%s", user_id)
    return _preferences(row)
