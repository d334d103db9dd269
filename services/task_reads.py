"""The hot reads (one task, a page of tasks) in SQLAlchemy Core, straight into JSON bytes.

No ORM identity map, no second validation by FastAPI: each read is one statement on an
autocommit connection (`db_config.read_only`) that also proves the caller still exists, with
each task's tags aggregated in SQL. The ORM stays for the writes (optimistic concurrency).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Executable,
    FromClause,
    Integer,
    RowMapping,
    bindparam,
    case,
    func,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import UnaryExpression

from db_models import Task, TaskTag, User
from exceptions import InvalidTokenError, TaskAccessDeniedError, TaskNotFoundError
from models import SortField, TaskFilters, TaskRead
from services.tasks import filter_conditions

_TASK = TypeAdapter(TaskRead)
_TASKS = TypeAdapter(list[TaskRead])
_TASKS_TABLE = Task.__table__
_USERS_TABLE = User.__table__
_COLUMNS = (
    "id",
    "user_id",
    "title",
    "description",
    "completed",
    "priority",
    "due_date",
    "created_at",
    "updated_at",
    "version",
)
_PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}


def _tags_of(dialect: str, source: FromClause) -> ColumnElement[Any]:
    """The task's tags in order, as one value: an array (PostgreSQL) or a JSON text (SQLite)."""
    if dialect == "postgresql":
        return (
            select(func.array_agg(TaskTag.tag).aggregate_order_by(TaskTag.position))
            .where(TaskTag.task_id == source.c.id)
            .scalar_subquery()
        )
    # SQLite before 3.44 has no ORDER BY inside an aggregate: aggregate an ordered subquery.
    ordered = (
        select(TaskTag.tag)
        .where(TaskTag.task_id == source.c.id)
        .order_by(TaskTag.position)
        .correlate(source)
        .subquery()
    )
    return select(func.json_group_array(ordered.c.tag)).scalar_subquery()


def _tag_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        tags: list[str] = orjson.loads(value)
        return tags
    return list(value)


def _task_dict(row: RowMapping) -> dict[str, Any]:
    return {**row, "tags": _tag_list(row["tags"])}


_OWNED_TASK: dict[str, Executable] = {}


def _owned_task_statement(dialect: str) -> Executable:
    # Built once per dialect: SQLAlchemy then reuses its compiled form and cache key.
    statement = _OWNED_TASK.get(dialect)
    if statement is None:
        on_task = _TASKS_TABLE.c.id == bindparam("task_id", type_=Integer)
        statement = (
            select(
                _USERS_TABLE.c.id.label("caller"),
                *(_TASKS_TABLE.c[name] for name in _COLUMNS),
                _tags_of(dialect, _TASKS_TABLE).label("tags"),
            )
            .select_from(_USERS_TABLE.outerjoin(_TASKS_TABLE, on_task))
            .where(_USERS_TABLE.c.id == bindparam("user_id", type_=Integer))
        )
        _OWNED_TASK[dialect] = statement
    return statement


async def get_owned_task(engine: AsyncEngine, *, user_id: int, task_id: int) -> RowMapping:
    """The caller's task (with `version` and `tags`): 401 if the caller no longer exists,
    404 if the task does not, 403 if it is someone else's. One statement."""
    statement = _owned_task_statement(engine.dialect.name)
    async with engine.connect() as connection:
        result = await connection.execute(statement, {"user_id": user_id, "task_id": task_id})
        row: RowMapping | None = result.mappings().one_or_none()
    if row is None:
        raise InvalidTokenError()
    if row["id"] is None:
        raise TaskNotFoundError(task_id)
    if row["user_id"] != user_id:
        raise TaskAccessDeniedError(task_id)
    return row


def task_json(row: RowMapping) -> bytes:
    """A task row as the JSON body of a TaskRead."""
    return _TASK.dump_json(_TASK.validate_python(_task_dict(row)))


def _ordering(filters: TaskFilters, source: FromClause) -> list[UnaryExpression[Any]]:
    columns = source.c
    column: ColumnElement[Any] = (
        case(_PRIORITY_RANK, value=columns.priority)
        if filters.sort_by is SortField.PRIORITY
        else columns[filters.sort_by.value]
    )
    if filters.sort_order == "desc":
        return [column.desc().nulls_last(), columns.id.desc()]
    return [column.asc().nulls_last(), columns.id.asc()]


async def list_tasks(
    engine: AsyncEngine, *, user_id: int, filters: TaskFilters
) -> tuple[bytes, int]:
    """One page of the caller's tasks as a JSON array, and the number of matches before paging.
    One statement: the page (with its window count) left-joined to the caller's user row, so a
    caller who no longer exists is a 401 and an empty page still proves the caller exists."""
    conditions = filter_conditions(user_id, filters)
    page = (
        select(*(_TASKS_TABLE.c[name] for name in _COLUMNS), func.count().over().label("total"))
        .where(*conditions)
        .order_by(*_ordering(filters, _TASKS_TABLE))
        .offset(filters.skip)
        .limit(filters.limit)
        .subquery("page")
    )
    dialect = engine.dialect.name
    statement = (
        select(
            _USERS_TABLE.c.id.label("caller"),
            *page.c,
            _tags_of(dialect, page).label("tags"),
        )
        .select_from(_USERS_TABLE.outerjoin(page, true()))
        .where(_USERS_TABLE.c.id == user_id)
        .order_by(*_ordering(filters, page))
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(statement)).mappings().all()
        if not rows:
            raise InvalidTokenError()
        if rows[0]["id"] is not None:
            tasks = [_task_dict(row) for row in rows]
            return _TASKS.dump_json(_TASKS.validate_python(tasks)), int(rows[0]["total"])
        total = 0
        if filters.skip > 0:  # past the end: the count is not on any row
            count = select(func.count()).select_from(_TASKS_TABLE).where(*conditions)
            total = int((await connection.execute(count)).scalar_one())
    return b"[]", total
