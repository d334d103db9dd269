"""The statement layer: every read and write of tasks and their tags, one method per operation.

`TaskStore` is the portable form, in SQLAlchemy Core, and what SQLite runs. PostgreSQL runs
`services.task_store_pg.PostgresTaskStore`, which replaces three methods with measured
shortcuts (one-statement create and PATCH, the single-task read on the driver) and nothing else.
`services.tasks.store_for` chooses between them once, when the app starts.

The rules every write follows, here and in the shortcuts:
* authorization is `services.access.task_clause`, refusals are `services.access.refuse`;
* rows are locked task(s) first, then the owner's user row (so writers never deadlock);
* If-Match is checked on the locked row (`access.check_version`);
* each write moves the task's `version` in its own UPDATE and bumps the owner's `data_version`
  (the stats cache key) once, with `_BUMP`.
A task is handed around as a `TaskRow`: TaskRead's fields plus `version`;
`services.task_json` is its one serialiser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Executable,
    FromClause,
    Integer,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import BindParameter

from db_config import read_only
from db_models import Task, TaskFile, TaskTag, User, utcnow
from exceptions import InvalidTokenError, TooManyTagsError
from models import MAX_TAGS_PER_TASK, Priority, TaskCreate, TaskFilters
from services import task_filters
from services.access import (
    TASK_ID,
    Need,
    caller_clause,
    caller_params,
    check_version,
    decide,
    refuse,
    task_clause,
)

_METADATA = Task.metadata
TASKS = _METADATA.tables[Task.__tablename__]
TAGS = _METADATA.tables[TaskTag.__tablename__]
USERS = _METADATA.tables[User.__tablename__]
FILES = _METADATA.tables[TaskFile.__tablename__]
# TaskRead's fields, in TaskRead's order (the JSON keys come out in this order), then `version`.
READ_FIELDS = (
    "id", "title", "description", "completed", "priority", "created_at", "updated_at",
    "due_date", "tags", "user_id",
)  # fmt: skip
COLUMNS = (*tuple(name for name in READ_FIELDS if name != "tags"), "version")
FIRST_VERSION = 1
TaskRow = dict[str, Any]
IDS: BindParameter[Any] = bindparam("ids", expanding=True)
# The owner's data_version, bumped once per write, and its task count, moved by the tasks the
# write `added` (1 on insert, -1 on delete, else 0); RETURNING the owner's name and address for
# the completion email. Always after the task rows are locked: lock order task, then user.
ADDED = bindparam("added", value=0, type_=Integer)
BUMP = (
    update(USERS)
    .where(caller_clause(USERS))
    .values(data_version=USERS.c.data_version + 1, task_count=USERS.c.task_count + ADDED)
    .returning(USERS.c.id, USERS.c.username, USERS.c.email)
)


def tags_of(dialect: str, source: FromClause) -> ColumnElement[Any]:
    """The task's tags in order, as one value: an array (PostgreSQL) or a JSON text (SQLite)."""
    if dialect == "postgresql":
        return (
            select(func.array_agg(TAGS.c.tag).aggregate_order_by(TAGS.c.position))
            .where(TAGS.c.task_id == source.c.id)
            .scalar_subquery()
        )
    # SQLite before 3.44 has no ORDER BY inside an aggregate: aggregate an ordered subquery.
    ordered = (
        select(TAGS.c.tag)
        .where(TAGS.c.task_id == source.c.id)
        .order_by(TAGS.c.position)
        .correlate(source)
        .subquery()
    )
    return select(func.json_group_array(ordered.c.tag)).scalar_subquery()


def tag_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        tags: list[str] = orjson.loads(value)
        return tags
    return list(value)


def as_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row of `COLUMNS` (and `tags`, aggregated or a list) as TaskRead's fields, in order."""
    return {
        "id": row["id"], "title": row["title"], "description": row["description"],
        "completed": row["completed"], "priority": row["priority"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "due_date": row["due_date"], "tags": tag_list(row["tags"]), "user_id": row["user_id"],
    }  # fmt: skip


def as_task(row: Mapping[Any, Any]) -> TaskRow:
    """A row as a TaskRow: TaskRead's fields, then `version` (the ETag)."""
    task = as_fields(row)
    task["version"] = row["version"]
    return task


@lru_cache(maxsize=8)
def read_statement(dialect: str, need: Need) -> Executable:
    """The caller's row outer-joined to the task, with the verdict (`access.decide`), the
    task's columns and its tags: one statement that also proves the caller exists."""
    return (
        select(
            USERS.c.id.label("caller"),
            task_clause(need).label("allowed"),
            *(TASKS.c[name] for name in COLUMNS),
            tags_of(dialect, TASKS).label("tags"),
        )
        .select_from(USERS.outerjoin(TASKS, TASKS.c.id == TASK_ID))
        .where(caller_clause(USERS))
    )


@lru_cache(maxsize=1024)
def list_statement(dialect: str, shape: task_filters.Shape) -> tuple[Executable, Executable]:
    """A page with the number of matches before paging, left-joined to the caller's row (so an
    empty page still proves the caller exists); and the count alone, for a page past the end.

    The total: unfiltered, the user row's task count (kept by BUMP: no counting at all, so a
    page costs the same at 10 000 tasks as at 200); filtered, a window count over the page's
    own scan, which evaluates the filter once (a separate count evaluated a search twice)."""
    where = task_filters.conditions(shape)
    sort_by, sort_order = shape[7], shape[8]
    completed, priority, tag, overdue, search, after, before = shape[:7]
    filtered = completed or priority or tag or overdue is not None or search or after or before
    window = (func.count().over().label("total"),) if filtered else ()
    page = (
        select(*(TASKS.c[name] for name in COLUMNS), *window)
        .where(*where)
        .order_by(*task_filters.ordering(sort_by, sort_order, TASKS))
        .offset(bindparam("skip", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
        .subquery("page")
    )
    total = page.c.total if filtered else USERS.c.task_count
    statement = (
        select(
            USERS.c.id.label("caller"),
            total.label("total"),
            *(page.c[name] for name in COLUMNS),
            tags_of(dialect, page).label("tags"),
        )
        .select_from(USERS.outerjoin(page, true()))
        .where(caller_clause(USERS))
        .order_by(*task_filters.ordering(sort_by, sort_order, page))
    )
    return statement, select(func.count()).select_from(TASKS).where(*where)


_LOCK = {
    need: select(TASKS.c.id, TASKS.c.completed, TASKS.c.version)
    .where(TASKS.c.id.in_(IDS), task_clause(need))
    .order_by(TASKS.c.id)  # overlapping writers lock in one order: no deadlock
    .with_for_update()  # SQLite: nothing to render; BEGIN IMMEDIATE already serialises writers
    for need in Need
}
_TAG_ROWS = (
    select(TAGS.c.task_id, TAGS.c.tag).where(TAGS.c.task_id.in_(IDS)).order_by(TAGS.c.position)
)
_DELETE_TAGS = delete(TAGS).where(TAGS.c.task_id.in_(IDS))
INSERT_TAGS = insert(TAGS)
INSERT_TASK = insert(TASKS).returning(TASKS.c.id)
_FILE_KEYS = select(FILES.c.storage_key).where(FILES.c.task_id == TASK_ID)
_DELETE_TASK = delete(TASKS).where(TASKS.c.id == TASK_ID)


@lru_cache(maxsize=256)
def update_statement(fields: tuple[str, ...]) -> Executable:
    """UPDATE the locked tasks: the fields sent (bound as `set_<name>`), `updated_at` and the
    version, which moves with every write; RETURNING the rows."""
    values: dict[str, Any] = {name: bindparam(f"set_{name}") for name in fields}
    values.update(updated_at=bindparam("now"), version=TASKS.c.version + 1)
    returned = (TASKS.c[name] for name in COLUMNS)
    return update(TASKS).where(TASKS.c.id.in_(IDS)).values(values).returning(*returned)


def field_params(changes: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The columns a change writes (sorted: one statement per shape) and their values."""
    fields = tuple(sorted(name for name in changes if name != "tags"))
    params = {f"set_{name}": changes[name] for name in fields}
    if "priority" in changes:
        params["set_priority"] = Priority(changes["priority"]).value
    return fields, params


def tag_rows(user_id: int, task_id: int, tags: Sequence[str]) -> list[dict[str, Any]]:
    if len(tags) > MAX_TAGS_PER_TASK:
        raise TooManyTagsError(task_id, MAX_TAGS_PER_TASK)
    return [
        {"task_id": task_id, "user_id": user_id, "tag": tag, "position": position}
        for position, tag in enumerate(tags)
    ]


TagEdit = Callable[[list[str]], list[str] | None]


@dataclass(frozen=True)
class Write:
    """One write of tasks: who, which, what. `changes` are the fields to set; or `edit_tags`
    derives a task's new tags from its current ones under the lock (None: nothing to write).
    `allowed` is If-Match's versions; `bulk` answers 404 for any id refused (a bulk body must
    not probe which ids exist)."""

    user_id: int
    task_ids: Sequence[int]
    changes: Mapping[str, Any] = field(default_factory=dict)
    allowed: frozenset[int] | None = None
    edit_tags: TagEdit | None = None
    bulk: bool = False


@dataclass
class Written:
    """What a write did: the tasks as they are now, which of them it completed, and the owner
    (for the completion email)."""

    tasks: list[TaskRow]
    completed_now: list[TaskRow] = field(default_factory=list)
    owner_name: str = ""
    owner_email: str = ""


class TaskStore:
    """Tasks and their tags, in portable Core (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reads = read_only(engine)
        self.dialect = engine.dialect.name

    async def read(self, *, user_id: int, task_id: int, need: Need = Need.READ) -> TaskRow:
        """The task the caller may use for `need` (401 / 404 / 403 otherwise)."""
        params = caller_params(user_id, the_task=task_id)
        async with self.reads.connect() as connection:
            result = await connection.execute(read_statement(self.dialect, need), params)
            row = result.mappings().first()
        decide(row, task_id=task_id)
        assert row is not None
        return as_task(row)

    async def list_page(self, *, user_id: int, filters: TaskFilters) -> tuple[list[TaskRow], int]:
        """One page of the caller's tasks and the number of matches before paging."""
        statement, count = list_statement(self.dialect, task_filters.shape(filters))
        params = task_filters.parameters(user_id, filters)
        async with self.reads.connect() as connection:
            rows = (await connection.execute(statement, params)).mappings().all()
            if not rows:
                raise InvalidTokenError()
            if rows[0]["id"] is not None or rows[0]["total"] is not None:
                # TaskRead's fields only: a page carries no ETags, so its rows need no version.
                pages = [as_fields(row) for row in rows] if rows[0]["id"] is not None else []
                return pages, int(rows[0]["total"])
            # A filtered page that is empty: its window counted nothing. Past the end (skip),
            # the matches are counted on their own; at the start there are none.
            if filters.skip == 0:
                return [], 0
            return [], int((await connection.execute(count, params)).scalar_one())

    async def insert(self, *, user_id: int, data: TaskCreate) -> TaskRow:
        """A new task with its tags. The data_version UPDATE proves the caller exists."""
        now = utcnow()
        task = self.new_row(user_id, data, now)
        async with self.engine.begin() as connection:
            bumped = await connection.execute(BUMP, caller_params(user_id, added=1))
            if bumped.first() is None:
                raise InvalidTokenError()
            values = {name: task[name] for name in COLUMNS if name != "id"}
            task["id"] = (await connection.execute(INSERT_TASK, values)).scalar_one()
            if task["tags"]:
                await connection.execute(INSERT_TAGS, tag_rows(user_id, task["id"], task["tags"]))
        return task

    @staticmethod
    def new_row(user_id: int, data: TaskCreate, now: datetime) -> TaskRow:
        return {
            "id": None, "title": data.title, "description": data.description,
            "completed": data.completed, "priority": data.priority.value, "created_at": now,
            "updated_at": now, "due_date": data.due_date, "tags": list(data.tags),
            "user_id": user_id, "version": FIRST_VERSION,
        }  # fmt: skip

    async def update(self, write: Write) -> Written:
        """Apply a `Write` to its tasks: all of them or, any refused, none. One task: 401 / 404
        / 403 / 412; `bulk`: 404 for the first id that is missing or not the caller's to write
        (401 if the caller is gone)."""
        user_id, changes, edit_tags = write.user_id, write.changes, write.edit_tags
        ids = sorted(set(write.task_ids))
        async with self.engine.begin() as connection:
            locked = await self._lock(
                connection, user_id, ids, Need.WRITE, write.allowed, bulk=write.bulk
            )
            tags = await self._tags(connection, ids) if edit_tags or "tags" not in changes else {}
            if edit_tags is not None:
                edited = edit_tags(tags[ids[0]])
                if edited is None:  # nothing to change: the task as it is
                    return Written([await self._reread(connection, user_id, ids[0])])
                changes = {"tags": edited}
            fields, params = field_params(changes)
            params.update(ids=ids, now=utcnow())
            rows = (await connection.execute(update_statement(fields), params)).mappings().all()
            if "tags" in changes:
                tags = {task_id: list(changes["tags"]) for task_id in ids}
                await connection.execute(_DELETE_TAGS, {"ids": ids})
                new = [row for i in ids for row in tag_rows(user_id, i, changes["tags"])]
                if new:
                    await connection.execute(INSERT_TAGS, new)
            owner = (await connection.execute(BUMP, caller_params(user_id))).first()
            if owner is None:
                raise InvalidTokenError()
        tasks = [as_task({**row, "tags": tags[row["id"]]}) for row in rows]
        completed_now = [t for t in tasks if t["completed"] and not locked[t["id"]]]
        return Written(tasks, completed_now, owner.username, owner.email)

    async def delete(
        self, *, user_id: int, task_id: int, allowed: frozenset[int] | None = None
    ) -> list[str]:
        """Delete the task (owner only); its tags and file rows go with it (ON DELETE CASCADE).
        Returns the file blobs' storage keys, to remove after the commit. Of two racing deletes
        the second waits for the first's lock, then finds nothing: 404."""
        params = caller_params(user_id, the_task=task_id)
        async with self.engine.begin() as connection:
            await self._lock(connection, user_id, [task_id], Need.OWNER, allowed)
            keys = list((await connection.execute(_FILE_KEYS, params)).scalars())
            await connection.execute(_DELETE_TASK, params)
            if (await connection.execute(BUMP, {**params, "added": -1})).first() is None:
                raise InvalidTokenError()
        return keys

    async def _lock(
        self,
        connection: AsyncConnection,
        user_id: int,
        ids: list[int],
        need: Need,
        allowed: frozenset[int] | None,
        *,
        bulk: bool = False,
    ) -> dict[int, bool]:
        """Lock the tasks the caller may use for `need` (in id order) and check If-Match on
        them; every id must be there. Returns each task's `completed` before this write."""
        params = caller_params(user_id, ids=ids)
        rows = (await connection.execute(_LOCK[need], params)).all()
        if len(rows) < len(ids):
            found = {row.id for row in rows}
            missing = next(task_id for task_id in ids if task_id not in found)
            await refuse(
                connection, user_id=user_id, task_id=missing, need=need, forbidden_as_missing=bulk
            )
        for row in rows:
            check_version(row.id, row.version, allowed)
        return {row.id: bool(row.completed) for row in rows}

    @staticmethod
    async def _tags(connection: AsyncConnection, ids: list[int]) -> dict[int, list[str]]:
        tags: dict[int, list[str]] = {task_id: [] for task_id in ids}
        for row in await connection.execute(_TAG_ROWS, {"ids": ids}):
            tags[row.task_id].append(row.tag)
        return tags

    async def _reread(self, connection: AsyncConnection, user_id: int, task_id: int) -> TaskRow:
        params = caller_params(user_id, the_task=task_id)
        statement = read_statement(self.dialect, Need.WRITE)
        row = (await connection.execute(statement, params)).mappings().first()
        decide(row, task_id=task_id)
        assert row is not None
        return as_task(row)
