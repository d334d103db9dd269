"""The hot reads (one task, a page of tasks) in SQLAlchemy Core, straight into JSON bytes.

No ORM identity map, no second validation by FastAPI: each read is one statement on an
autocommit connection (`db_config.read_only`) that also proves the caller still exists, with
each task's tags aggregated in SQL. Create and PATCH are Core too (services.tasks); the ORM
stays for the other writes (tags, delete, bulk update).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    Executable,
    FromClause,
    Integer,
    Row,
    String,
    bindparam,
    case,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import UnaryExpression

from db_config import DriverQuery
from db_models import Task, TaskTag, User, UTCDateTime
from exceptions import InvalidTokenError, TaskAccessDeniedError, TaskNotFoundError
from models import SortField, TaskFilters
from services.tasks import not_overdue_condition, overdue_condition, today

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


def _task_dict(source: Row[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """A row as TaskRead's fields, in TaskRead's order (the JSON keys come out in this order)."""
    row: Mapping[Any, Any] = source._mapping if isinstance(source, Row) else source
    return {
        "id": row["id"],
        "title": row["title"],
        "description": row["description"],
        "completed": row["completed"],
        "priority": row["priority"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "due_date": row["due_date"],
        "tags": _tag_list(row["tags"]),
        "user_id": row["user_id"],
    }


def _dumps(value: Any) -> bytes:
    # Byte for byte what TaskRead's pydantic serialiser writes (UTC as "Z", dates ISO, UTF-8),
    # without validating rows the database already typed.
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


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


_DRIVER_QUERIES: dict[str, DriverQuery] = {}


def _driver_query(engine: AsyncEngine) -> DriverQuery:
    # The SQL depends on the dialect only, so one per dialect name (compiled on first use).
    query = _DRIVER_QUERIES.get(engine.dialect.name)
    if query is None:
        statement = _owned_task_statement(engine.dialect.name)
        query = _DRIVER_QUERIES[engine.dialect.name] = DriverQuery(statement, engine)
    return query


async def get_owned_task(engine: AsyncEngine, *, user_id: int, task_id: int) -> Mapping[str, Any]:
    """The caller's task (with `version` and `tags`): 401 if the caller no longer exists,
    404 if the task does not, 403 if it is someone else's. One statement."""
    params = {"user_id": user_id, "task_id": task_id}
    row: Mapping[str, Any] | None
    if engine.dialect.name == "postgresql":
        row = await _driver_query(engine).fetchrow(engine, params)
    else:
        async with engine.connect() as connection:
            result = await connection.execute(_owned_task_statement("sqlite"), params)
            found = result.mappings().one_or_none()
            row = None if found is None else dict(found)
    if row is None:
        raise InvalidTokenError()
    if row["id"] is None:
        raise TaskNotFoundError(task_id)
    if row["user_id"] != user_id:
        raise TaskAccessDeniedError(task_id)
    return row


def task_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A task row as TaskRead's fields, in TaskRead's order."""
    return _task_dict(row)


def task_json(row: Mapping[str, Any]) -> bytes:
    """A task row as the JSON body of a TaskRead."""
    return _dumps(_task_dict(row))


def fields_json(fields: dict[str, Any]) -> bytes:
    """TaskRead's fields (in TaskRead's order, as services.tasks.create_task gives them)."""
    return _dumps(fields)


def _ordering(
    sort_by: SortField, sort_order: str, source: FromClause
) -> list[UnaryExpression[Any]]:
    columns = source.c
    column: ColumnElement[Any] = (
        case(_PRIORITY_RANK, value=columns.priority)
        if sort_by is SortField.PRIORITY
        else columns[sort_by.value]
    )
    if sort_order == "desc":
        return [column.desc().nulls_last(), columns.id.desc()]
    return [column.asc().nulls_last(), columns.id.asc()]


# How a search term is matched. PostgreSQL runs these statements as prepared statements and,
# after five executions on a connection, with a generic plan: one plan for every user and every
# term. pg_trgm extracts no trigram from a term without three letters or digits in a row, and a
# trigram index scan for such a term reads every entry of the index (a 200-task user's "re":
# about 1 ms -> 50 ms on a 113 000-row table). Those terms get a form the trigram indexes
# (migration 0005) cannot serve, so even the generic plan keeps the btree scan; the rest are
# ILIKE, which they can.
# (ASCII only: whether pg_trgm counts other letters as letters depends on the database's locale.)
_Search = Literal["", "scan", "trigram"]
_TRIGRAM = re.compile(r"[A-Za-z0-9]{3}")


def _search_kind(term: str | None) -> _Search:
    if not term:
        return ""
    return "trigram" if _TRIGRAM.search(term) else "scan"


# The statement's shape: which filters are present (their values are bound parameters),
# the overdue direction and the ordering. A few thousand shapes at most, and clients use few.
_Shape = tuple[bool, bool, bool, bool | None, _Search, bool, bool, SortField, str]


def _shape(filters: TaskFilters) -> _Shape:
    return (
        filters.completed is not None,
        filters.priority is not None,
        bool(filters.tag),
        filters.overdue,
        _search_kind(filters.search),
        filters.created_after is not None,
        filters.created_before is not None,
        filters.sort_by,
        filters.sort_order,
    )


def _parameters(user_id: int, filters: TaskFilters) -> dict[str, Any]:
    params: dict[str, Any] = {"user_id": user_id, "skip": filters.skip, "limit": filters.limit}
    if filters.completed is not None:
        params["completed"] = filters.completed
    if filters.priority is not None:
        params["priority"] = filters.priority.value
    if filters.tag:
        params["tag"] = filters.tag
    if filters.overdue is not None:
        params["on"] = today()
    if filters.search:
        params["pattern"] = f"%{_escape_like(filters.search)}%"
    if filters.created_after is not None:
        params["created_after"] = _day_start(filters.created_after)
    if filters.created_before is not None:
        params["created_before"] = _day_start(filters.created_before + timedelta(days=1))
    return params


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _conditions(shape: _Shape) -> list[ColumnElement[bool]]:
    completed, priority, tag, overdue, search, after, before, _, _ = shape
    conditions: list[ColumnElement[bool]] = [Task.user_id == bindparam("user_id", type_=Integer)]
    if completed:  # the column is NOT NULL, so = is IS, and it can use the index
        conditions.append(Task.completed == bindparam("completed", type_=Boolean))
    if priority:
        conditions.append(Task.priority == bindparam("priority", type_=String))
    if tag:
        tagged = select(TaskTag.task_id).where(TaskTag.tag == bindparam("tag", type_=String))
        conditions.append(Task.id.in_(tagged))
    if overdue is not None:
        on = bindparam("on", type_=Date)
        conditions.append(overdue_condition(on) if overdue else not_overdue_condition(on))
    if search == "trigram":
        pattern = bindparam("pattern", type_=String)
        conditions.append(
            or_(
                Task.title.ilike(pattern, escape="\\"),
                Task.description.ilike(pattern, escape="\\"),
            )
        )
    elif search == "scan":
        # The same test: PostgreSQL's ILIKE is LIKE over lower() of both sides (and SQLAlchemy
        # renders ILIKE so on SQLite), but no index matches lower(title). See _Search.
        lowered = func.lower(bindparam("pattern", type_=String))
        conditions.append(
            or_(
                func.lower(Task.title).like(lowered, escape="\\"),
                func.lower(Task.description).like(lowered, escape="\\"),
            )
        )
    if after:
        conditions.append(Task.created_at >= bindparam("created_after", type_=UTCDateTime))
    if before:
        conditions.append(Task.created_at < bindparam("created_before", type_=UTCDateTime))
    return conditions


@lru_cache(maxsize=1024)
def _list_statements(dialect: str, shape: _Shape) -> tuple[Executable, Executable]:
    """The page statement and the count (for a page past the end) of one shape, built once:
    SQLAlchemy then reuses the cache key and the compiled SQL."""
    conditions = _conditions(shape)
    sort_by, sort_order = shape[7], shape[8]
    page = (
        select(*(_TASKS_TABLE.c[name] for name in _COLUMNS), func.count().over().label("total"))
        .where(*conditions)
        .order_by(*_ordering(sort_by, sort_order, _TASKS_TABLE))
        .offset(bindparam("skip", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
        .subquery("page")
    )
    statement = (
        select(
            _USERS_TABLE.c.id.label("caller"),
            *page.c,
            _tags_of(dialect, page).label("tags"),
        )
        .select_from(_USERS_TABLE.outerjoin(page, true()))
        .where(_USERS_TABLE.c.id == bindparam("user_id", type_=Integer))
        .order_by(*_ordering(sort_by, sort_order, page))
    )
    count = select(func.count()).select_from(_TASKS_TABLE).where(*conditions)
    return statement, count


async def list_tasks(
    engine: AsyncEngine, *, user_id: int, filters: TaskFilters
) -> tuple[bytes, int]:
    """One page of the caller's tasks as a JSON array, and the number of matches before paging.
    One statement: the page (with its window count) left-joined to the caller's user row, so a
    caller who no longer exists is a 401 and an empty page still proves the caller exists."""
    statement, count = _list_statements(engine.dialect.name, _shape(filters))
    params = _parameters(user_id, filters)
    async with engine.connect() as connection:
        rows = (await connection.execute(statement, params)).all()
        if not rows:
            raise InvalidTokenError()
        if rows[0].id is not None:
            return _dumps([_task_dict(row) for row in rows]), int(rows[0].total)
        total = 0
        if filters.skip > 0:  # past the end: the count is not on any row
            total = int((await connection.execute(count, params)).scalar_one())
    return b"[]", total
