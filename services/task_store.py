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
  (the stats cache key) once, with `BUMP`: the owner's, also when an editor of a shared task
  writes, so the owner's cached stats go stale with it.
A task is handed around as a `TaskRow`: TaskRead's fields plus `version`;
`services.task_json` is its one serialiser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

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
from db_models import Task, TaskFile, TaskShare, TaskTag, User, utcnow
from exceptions import InvalidTokenError
from models import SortField, TaskCreate, TaskFilters
from services import event_writes, task_filters
from services.access import (
    TASK_ID,
    Need,
    caller_clause,
    caller_params,
    check_version,
    decide,
    live_credential,
    refuse,
    task_clause,
)
from services.task_writes import (
    READ_FIELDS,
    TaskRow,
    Write,
    as_fields,
    as_shared,
    as_task,
    field_params,
    tag_rows,
)

_METADATA = Task.metadata
TASKS = _METADATA.tables[Task.__tablename__]
TAGS = _METADATA.tables[TaskTag.__tablename__]
USERS = _METADATA.tables[User.__tablename__]
FILES = _METADATA.tables[TaskFile.__tablename__]
SHARES = _METADATA.tables[TaskShare.__tablename__]
COLUMNS = (*tuple(name for name in READ_FIELDS if name != "tags"), "version")
FIRST_VERSION = 1

IDS: BindParameter[Any] = bindparam("ids", expanding=True)
# The owners' data_version, bumped once per write, and their task count, moved by the tasks the
# write `added` (1 on insert, -1 on delete, else 0); RETURNING their ids (none: the caller is
# gone). Always after the task rows are locked: lock order task, then user. `owners` are the
# written tasks' owners (the caller, unless an editor wrote). Mail is not the write's business:
# the relay derives it from the events (jobs/relay.py).
ADDED = bindparam("added", value=0, type_=Integer)
OWNERS: BindParameter[Any] = bindparam("owners", expanding=True)
BUMP = (
    update(USERS)
    .where(USERS.c.id.in_(OWNERS), live_credential())
    .values(data_version=USERS.c.data_version + 1, task_count=USERS.c.task_count + ADDED)
    .returning(USERS.c.id)
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


@cache
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
def list_statement(
    dialect: str, shape: task_filters.Shape, *, own: bool = True
) -> tuple[Executable, Executable]:
    """A page with the number of matches before paging, left-joined to the caller's row (so an
    empty page still proves the caller exists); and the count alone, for a page past the end.

    The total: unfiltered, the user row's task count (kept by BUMP: no counting at all, so a
    page costs the same at 10 000 tasks as at 200); filtered, a window count over the page's
    own scan, which evaluates the filter once (a separate count evaluated a search twice).

    Not `own`: the tasks shared with the caller (GET /tasks/shared-with-me), read from the
    caller's shares through their (user_id, task_id) index, each with the share's permission
    and its owner's name; always counted by the window (the user row counts only their own)."""
    where = task_filters.conditions(shape, own=own)
    sort_by, sort_order = shape[7], shape[8]
    completed, priority, tag, overdue, search, after, before = shape[:7]
    filtered = completed or priority or tag or overdue is not None or search or after or before
    filtered = filtered or not own
    window = (func.count().over().label("total"),) if filtered else ()
    source = TASKS if own else TASKS.join(SHARES, SHARES.c.task_id == TASKS.c.id)
    shared = () if own else (SHARES.c.permission,)
    paged = (
        select(*(TASKS.c[name] for name in COLUMNS), *shared, *window)
        .select_from(source)
        .where(*where)
        .order_by(*task_filters.ordering(sort_by, sort_order, TASKS, own=own))
        .offset(bindparam("skip", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    if not filtered and sort_by is SortField.ID:
        # The page's ids first, from the (user_id, id) index alone (an index-only scan), then
        # their rows by primary key. Asked for the rows directly, PostgreSQL walks the primary
        # key and filters by owner (the owner's sort key is redundant under `user_id = :x`, and
        # it assumes a user's ids are spread evenly): 8 000 other rows read for one page.
        ids = paged.with_only_columns(TASKS.c.id)
        paged = select(*(TASKS.c[name] for name in COLUMNS)).where(TASKS.c.id.in_(ids))
    page = paged.subquery("page")
    total = page.c.total if filtered else USERS.c.task_count
    owner = USERS.alias("owner")
    joined = USERS.outerjoin(page, true())
    if not own:
        joined = joined.outerjoin(owner, owner.c.id == page.c.user_id)
    extra = () if own else (page.c.permission, owner.c.username.label("owner_username"))
    statement = (
        select(
            USERS.c.id.label("caller"),
            total.label("total"),
            *(page.c[name] for name in COLUMNS),
            tags_of(dialect, page).label("tags"),
            *extra,
        )
        .select_from(joined)
        .where(caller_clause(USERS))
        .order_by(*task_filters.ordering(sort_by, sort_order, page, own=own))
    )
    count = select(func.count().label("total")).select_from(source).where(*where)
    return statement, count


_LOCK = {
    need: select(*(TASKS.c[name] for name in COLUMNS))
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


async def bump(
    connection: AsyncConnection, user_id: int, owners: list[int], added: int = 0
) -> None:
    """BUMP these owners (in id order, as every writer locks them), while the caller's
    credential is live; none bumped: the caller's row or credential is gone (401)."""
    params = caller_params(user_id, owners=owners, added=added)
    if (await connection.execute(BUMP, params)).first() is None:
        raise InvalidTokenError()


class TaskStore:
    """Tasks and their tags, in portable Core (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reads = read_only(engine)
        self.dialect = engine.dialect.name

    async def fetch(
        self, statement: Executable, params: dict[str, Any]
    ) -> Sequence[Mapping[Any, Any]]:
        """Every row of one read, on an autocommit connection: the one way reads are run, so
        PostgreSQL can run them on its driver (`PostgresTaskStore.fetch`)."""
        async with self.reads.connect() as connection:
            return (await connection.execute(statement, params)).mappings().all()

    async def read(self, *, user_id: int, task_id: int, need: Need = Need.READ) -> TaskRow:
        """The task the caller may use for `need` (401 / 404 / 403 otherwise)."""
        params = caller_params(user_id, the_task=task_id)
        rows = await self.fetch(read_statement(self.dialect, need), params)
        row = rows[0] if rows else None
        decide(row, task_id=task_id)
        assert row is not None
        return as_task(row)

    async def list_page(
        self, *, user_id: int, filters: TaskFilters, own: bool = True
    ) -> tuple[list[TaskRow], int]:
        """One page of the caller's tasks (or, not `own`, of those shared with the caller) and
        the number of matches before paging."""
        shape = task_filters.shape(filters)
        statement, count = list_statement(self.dialect, shape, own=own)
        params = task_filters.parameters(user_id, filters)
        rows = await self.fetch(statement, params)
        if not rows:
            raise InvalidTokenError()
        if rows[0]["id"] is not None or rows[0]["total"] is not None:
            # TaskRead's fields only: a page carries no ETags, so its rows need no version.
            fields = as_fields if own else as_shared
            pages = [fields(row) for row in rows] if rows[0]["id"] is not None else []
            return pages, int(rows[0]["total"])
        # A filtered page that is empty: its window counted nothing. Past the end (skip), the
        # matches are counted on their own; at the start there are none.
        if filters.skip == 0:
            return [], 0
        return [], int((await self.fetch(count, params))[0]["total"])

    async def insert(self, *, user_id: int, data: TaskCreate) -> TaskRow:
        """A new task with its tags. The data_version UPDATE proves the caller exists."""
        now = utcnow()
        task = self.new_row(user_id, data, now)
        async with self.engine.begin() as connection:
            await bump(connection, user_id, [user_id], added=1)
            values = {name: task[name] for name in COLUMNS if name != "id"}
            task["id"] = (await connection.execute(INSERT_TASK, values)).scalar_one()
            if task["tags"]:
                await connection.execute(INSERT_TAGS, tag_rows(user_id, task["id"], task["tags"]))
            await event_writes.record(connection, [event_writes.task_created(user_id, task)], now)
        return task

    @staticmethod
    def new_row(user_id: int, data: TaskCreate, now: datetime) -> TaskRow:
        return {
            "id": None, "title": data.title, "description": data.description,
            "completed": data.completed, "priority": data.priority.value, "created_at": now,
            "updated_at": now, "due_date": data.due_date, "tags": list(data.tags),
            "user_id": user_id, "version": FIRST_VERSION,
        }  # fmt: skip

    async def update(self, write: Write) -> list[TaskRow]:
        """Apply a `Write` to its tasks: all of them or, any refused, none. One task: 401 / 404
        / 403 / 412; `bulk`: 404 for the first id that is missing or not the caller's to write
        (401 if the caller is gone)."""
        user_id, changes, edit_tags = write.user_id, write.changes, write.edit_tags
        ids = sorted(set(write.task_ids))
        async with self.engine.begin() as connection:
            locked = await self._lock(
                connection, user_id, ids, Need.WRITE, write.allowed, bulk=write.bulk
            )
            tags = await self._tags(connection, ids)
            if edit_tags is not None:
                edited = edit_tags(tags[ids[0]])
                if edited is None:  # nothing to change: the task as it is
                    return [await self._reread(connection, user_id, ids[0])]
                changes = {"tags": edited}
            fields, params = field_params(changes)
            now = utcnow()
            params.update(ids=ids, now=now)
            rows = (await connection.execute(update_statement(fields), params)).mappings().all()
            owner_of = {row["id"]: row["user_id"] for row in rows}
            old = {i: {**locked[i], "tags": tags[i]} for i in ids}
            if "tags" in changes:
                tags = {task_id: list(changes["tags"]) for task_id in ids}
                await connection.execute(_DELETE_TAGS, {"ids": ids})
                new = [r for i in ids for r in tag_rows(owner_of[i], i, changes["tags"])]
                if new:
                    await connection.execute(INSERT_TAGS, new)
            tasks = [as_task({**row, "tags": tags[row["id"]]}) for row in rows]
            await event_writes.record(
                connection, event_writes.task_update_events(user_id, old, tasks, changes), now
            )
            await bump(connection, user_id, sorted(set(owner_of.values())))
        return tasks

    async def delete(
        self, *, user_id: int, task_id: int, allowed: frozenset[int] | None = None
    ) -> list[str]:
        """Delete the task (owner only); its tags and file rows go with it (ON DELETE CASCADE).
        Returns the file blobs' storage keys (its task.deleted event lists them: the relay's
        cleanup job removes them after the commit). Of two racing deletes
        the second waits for the first's lock, then finds nothing: 404."""
        params = caller_params(user_id, the_task=task_id)
        async with self.engine.begin() as connection:
            locked = await self._lock(connection, user_id, [task_id], Need.OWNER, allowed)
            keys = list((await connection.execute(_FILE_KEYS, params)).scalars())
            owner = locked[task_id]["user_id"]
            event = event_writes.task_deleted(user_id, owner, task_id, keys)
            await event_writes.record(connection, [event], utcnow())
            await connection.execute(_DELETE_TASK, params)
            await bump(connection, user_id, [user_id], added=-1)
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
    ) -> dict[int, dict[str, Any]]:
        """Lock the tasks the caller may use for `need` (in id order) and check If-Match on
        them; every id must be there. Returns each task's columns before this write."""
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
        return {row.id: dict(row._mapping) for row in rows}

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
