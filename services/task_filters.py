"""The conditions of `GET /tasks` (and the overdue rule stats share): TaskFilters as SQL.

A statement's *shape* says which filters are present (their values are bound parameters), the
overdue direction and the ordering, so each shape is built and compiled once.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    FromClause,
    String,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.sql.elements import UnaryExpression

from db_models import Task, TaskTag, UTCDateTime
from models import SortField, TaskFilters
from services.access import Need, caller_params, shared_clause, task_clause

_PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}


def today() -> date:
    return datetime.now(UTC).date()


def overdue_condition(on: date | ColumnElement[date]) -> ColumnElement[bool]:
    return and_(Task.due_date < on, Task.completed.is_(False))


def not_overdue_condition(on: date | ColumnElement[date]) -> ColumnElement[bool]:
    # Spelled out rather than NOT(overdue): a NULL due date would make NOT(...) NULL.
    return or_(Task.due_date.is_(None), Task.due_date >= on, Task.completed.is_(True))


def ordering(
    sort_by: SortField, sort_order: str, source: FromClause, *, own: bool = True
) -> list[UnaryExpression[Any]]:
    """ORDER BY for a list, ties broken by id. Sorted by id, the caller's own list (`own`) names
    the (user_id, id) index's order; PostgreSQL still drops the owner's key (fixed by
    `user_id = :x`) and may walk the primary key instead, which is why an unfiltered page picks
    its ids first (`services.task_store.list_statement`). Shared tasks have many owners: by id."""
    columns = source.c
    descending = sort_order == "desc"
    if sort_by is SortField.ID:  # NOT NULL: no NULLS clause, so an index scan gives the order
        keys = [columns.user_id, columns.id] if own else [columns.id]
        return [key.desc() if descending else key.asc() for key in keys]
    column: ColumnElement[Any] = (
        case(_PRIORITY_RANK, value=columns.priority)
        if sort_by is SortField.PRIORITY
        else columns[sort_by.value]
    )
    if descending:
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

# The statement's shape. A few thousand shapes at most, and clients use few.
Shape = tuple[bool, bool, bool, bool | None, _Search, bool, bool, SortField, str]


def _search_kind(term: str | None) -> _Search:
    if not term:
        return ""
    return "trigram" if _TRIGRAM.search(term) else "scan"


def shape(filters: TaskFilters) -> Shape:
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


def parameters(user_id: int, filters: TaskFilters) -> dict[str, Any]:
    params = caller_params(user_id, skip=filters.skip, limit=filters.limit)
    if filters.completed is not None:
        params["completed"] = filters.completed
    if filters.priority is not None:
        params["priority"] = filters.priority.value
    if filters.tag:
        params["tag"] = filters.tag
    if filters.overdue is not None:
        params["on"] = today()
    if filters.search:
        params["pattern"] = f"%{escape_like(filters.search)}%"
    if filters.created_after is not None:
        params["created_after"] = _day_start(filters.created_after)
    if filters.created_before is not None:
        # Its last microsecond, not the next day's start: 9999-12-31 has no next day.
        params["created_before"] = datetime.combine(filters.created_before, time.max, tzinfo=UTC)
    return params


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def conditions(of: Shape, *, own: bool = True) -> list[ColumnElement[bool]]:
    """The WHERE of a list: the caller's own tasks (GET /tasks lists only those, shares or
    not) or (not `own`) the shares naming the caller, then each filter present."""
    completed, priority, tag, overdue, search, after, before, _, _ = of
    # The owner's rows: task_clause(OWNER) is `user_id = :the_caller`, what the indexes lead with.
    where: list[ColumnElement[bool]] = [task_clause(Need.OWNER) if own else shared_clause()]
    if completed:  # the column is NOT NULL, so = is IS, and it can use the index
        where.append(Task.completed == _param("completed", Boolean()))
    if priority:
        where.append(Task.priority == _param("priority", String()))
    if tag:
        tagged = select(TaskTag.task_id).where(TaskTag.tag == _param("tag", String()))
        where.append(Task.id.in_(tagged))
    if overdue is not None:
        on = _param("on", Date())
        where.append(overdue_condition(on) if overdue else not_overdue_condition(on))
    if search == "trigram":
        pattern = _param("pattern", String())
        where.append(
            or_(
                Task.title.ilike(pattern, escape="\\"), Task.description.ilike(pattern, escape="\\")
            )
        )
    elif search == "scan":
        # The same test: PostgreSQL's ILIKE is LIKE over lower() of both sides (and SQLAlchemy
        # renders ILIKE so on SQLite), but no index matches lower(title). See _Search.
        lowered = func.lower(_param("pattern", String()))
        where.append(
            or_(
                func.lower(Task.title).like(lowered, escape="\\"),
                func.lower(Task.description).like(lowered, escape="\\"),
            )
        )
    if after:
        where.append(Task.created_at >= _param("created_after", UTCDateTime()))
    if before:
        where.append(Task.created_at <= _param("created_before", UTCDateTime()))
    return where


def _param(name: str, type_: Any) -> ColumnElement[Any]:
    return bindparam(name, type_=type_)
