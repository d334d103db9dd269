"""PostgreSQL's shortcuts for the three busiest operations, behind TaskStore's own methods.

Each keeps the store's rules (authorization clause, lock order, If-Match on the locked row, one
version move, one data_version bump) in one statement, and each has its measured gain in
docs/PERFORMANCE.md:
* `fetch`: every read (a task, a page, the stats) runs on the asyncpg connection directly
  (`DriverQuery`);
* `insert`: the data_version bump, the task and its tags as one `WITH` statement;
* `update` of one task's fields (tags not sent): lock, UPDATE and bump as one `WITH` statement.
Every other write (tags, bulk, delete) is the portable form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Executable,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from db_config import DriverQuery
from db_models import utcnow
from event_tables import EventType
from exceptions import InvalidTokenError
from models import TaskCreate
from services import event_writes
from services.access import (
    CALLER,
    TASK_ID,
    Need,
    caller_clause,
    caller_params,
    live_credential,
    refuse,
    task_clause,
    version_clause,
)
from services.events import EVENTS, txid
from services.task_store import (
    COLUMNS,
    TAGS,
    TASKS,
    USERS,
    TaskStore,
)
from services.task_writes import TaskRow, Write, as_task, field_params, tag_rows

# The caller's id first: the INSERT selects it from the `caller` CTE, the rest are bound.
_NEW_COLUMNS = ("user_id", *(name for name in COLUMNS if name not in ("id", "user_id")))
_TAG_TYPE = postgresql.ARRAY(TAGS.c.tag.type)


def _numbered(tags: Any) -> Any:
    """`unnest(:tags) WITH ORDINALITY` as a FROM item with columns `tag` and `position`."""
    return func.unnest(tags).table_valued("tag", with_ordinality="position").render_derived()


def _insert_statement() -> Executable:
    """WITH caller AS (UPDATE users … RETURNING id), task AS (INSERT INTO tasks … SELECT … FROM
    caller RETURNING id), tags AS (INSERT INTO task_tags … FROM task, unnest(:tags) WITH
    ORDINALITY) SELECT id FROM task. No row: the caller no longer exists (nothing inserted).
    On an autocommit connection it is one round trip and still atomic (one statement)."""
    caller = (
        update(USERS)
        .where(caller_clause(USERS))
        .values(data_version=USERS.c.data_version + 1, task_count=USERS.c.task_count + 1)
        .returning(USERS.c.id.label("user_id"))
        .cte("caller")
    )
    fields = (bindparam(f"new_{name}", type_=TASKS.c[name].type) for name in _NEW_COLUMNS[1:])
    row = select(caller.c.user_id, *fields)
    task = insert(TASKS).from_select(_NEW_COLUMNS, row).returning(TASKS.c.id).cte("task")
    given = _numbered(bindparam("tags", type_=_TAG_TYPE))
    numbered = select(task.c.id, CALLER, given.c.tag, given.c.position - 1)
    new_tags = insert(TAGS).from_select(
        ["task_id", "user_id", "tag", "position"], numbered.join_from(task, given, true())
    )
    data = literal('{"task":{"id":') + cast(task.c.id, Text) + bindparam("event_tail", type_=Text)
    at = bindparam("new_created_at", type_=TASKS.c.created_at.type)
    kind = literal(EventType.TASK_CREATED.value)
    event_row = select(
        txid("postgresql"), at, kind, caller.c.user_id, caller.c.user_id, task.c.id, task.c.id,
        data,
    ).select_from(caller.join(task, true()))  # fmt: skip
    columns = ["txid", "occurred_at", "type", "actor_id", "owner_id", "task_id", "resource_id"]
    event = insert(EVENTS).from_select([*columns, "data"], event_row)
    return select(task.c.id).add_cte(new_tags.cte("tags")).add_cte(event.cte("event"))


_INSERT = _insert_statement()
_RETURNED = [TASKS.c[name] for name in COLUMNS]


@lru_cache(maxsize=256)
def _update_statement(fields: tuple[str, ...], guarded: bool) -> Executable:
    """The whole PATCH of one task, tags not sent, as one statement (built once per shape).

    WITH locked AS (SELECT … FOR UPDATE: the newest committed row the clause allows,
                    [If-Match checked on it]),
         patched AS (UPDATE tasks SET <fields sent>, version + 1 FROM locked … RETURNING the row
                     and the locked row's `completed`),
         bumped AS (UPDATE users SET data_version … WHERE id = the patched row's owner)
    SELECT patched.*, bumped.*, the task's version and tags as this statement's snapshot saw them.

    Each CTE waits for the one it reads, so locks go task, then user, as in every write. The
    snapshot columns are only right when no write committed between the statement's snapshot
    and its row lock, which `snapshot_version + 1 == version` tells the caller. For the same
    reason a PATCH that sends tags takes the portable path: a DELETE of the tags not listed
    would only see the tags of the statement's snapshot, and keep any added meanwhile."""
    olds = (TASKS.c[name].label(f"old_{name}") for name in fields)
    lock = select(TASKS.c.id, TASKS.c.completed.label("was_completed"), *olds)
    # The caller's credential is checked here, before anything is written (the statement
    # commits on its own); without it, `refuse` answers 401.
    lock = lock.where(TASKS.c.id == TASK_ID, task_clause(Need.WRITE), live_credential())
    lock = lock.with_for_update()
    locked = (lock.where(version_clause()) if guarded else lock).cte("locked")
    values: dict[str, Any] = {name: bindparam(f"set_{name}") for name in fields}
    values.update(updated_at=bindparam("now"), version=TASKS.c.version + 1)
    patched = (
        update(TASKS)
        .where(TASKS.c.id == locked.c.id)
        .values(values)
        .returning(*_RETURNED, *(c for c in locked.c if c.name != "id"))
        .cte("patched")
    )
    bumped = (
        update(USERS)
        .where(USERS.c.id == select(patched.c.user_id).scalar_subquery())
        .values(data_version=USERS.c.data_version + 1)
        .returning(USERS.c.id)
        .cte("bumped")
    )
    seen_version = select(TASKS.c.version).where(TASKS.c.id == TASK_ID).scalar_subquery()
    seen_tags = (
        select(func.array_agg(TAGS.c.tag).aggregate_order_by(TAGS.c.position))
        .where(TAGS.c.task_id == TASK_ID)
        .scalar_subquery()
    )
    statement = select(
        *patched.c, seen_version.label("snapshot_version"), seen_tags.label("tags")
    ).select_from(patched.join(bumped, true()))
    return statement


class PostgresTaskStore(TaskStore):
    """TaskStore with PostgreSQL's one-statement shortcuts (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # Keyed by the statement object: every read statement is built once (module constants
        # and lru_caches), so this holds one compiled query per statement shape.
        self._queries: dict[int, DriverQuery] = {}

    async def fetch(
        self, statement: Executable, params: dict[str, Any]
    ) -> Sequence[Mapping[Any, Any]]:
        query = self._queries.get(id(statement))
        if query is None or query.statement is not statement:
            query = self._queries[id(statement)] = DriverQuery(statement, self.engine)
        return await query.fetch(self.reads, params)

    async def insert(self, *, user_id: int, data: TaskCreate) -> TaskRow:
        task = self.new_row(user_id, data, utcnow())
        params = {f"new_{name}": task[name] for name in _NEW_COLUMNS[1:]}
        params.update(caller_params(user_id, tags=task["tags"]))
        params["event_tail"] = event_writes.task_created_data_tail(task).decode()
        tag_rows(user_id, 0, task["tags"])  # the tag count limit, before any write
        async with self.engine.connect() as connection:
            single = await connection.execution_options(isolation_level="AUTOCOMMIT")
            task["id"] = (await single.execute(_INSERT, params)).scalar_one_or_none()
        if task["id"] is None:
            raise InvalidTokenError()
        return task

    async def update(self, write: Write) -> list[TaskRow]:
        one_task = len(set(write.task_ids)) == 1
        if write.bulk or write.edit_tags is not None or "tags" in write.changes or not one_task:
            return await super().update(write)
        return await self._update_one(
            write.user_id, write.task_ids[0], write.changes, write.allowed
        )

    async def _update_one(
        self, user_id: int, task_id: int, changes: Mapping[str, Any], allowed: frozenset[int] | None
    ) -> list[TaskRow]:
        fields, params = field_params(changes)
        params.update(caller_params(user_id, now=utcnow(), the_task=task_id))
        if allowed is not None:
            params["allowed"] = sorted(allowed)  # one int[] parameter (access.version_clause)
        statement = _update_statement(fields, allowed is not None)
        async with self.engine.begin() as connection:
            found = (await connection.execute(statement, params)).mappings().first()
            if found is None:
                await refuse(
                    connection, user_id=user_id, task_id=task_id, need=Need.WRITE, allowed=allowed
                )
            row = dict(found)
            if row["snapshot_version"] + 1 != row["version"]:
                # Another write committed while this one waited for the row lock, so the tags
                # this statement's snapshot saw may be older than the row it wrote. Answer with
                # the task as it is now (its own version: body and ETag always agree).
                row = {**row, **await self._reread(connection, user_id, task_id)}
            task = as_task(row)
            old = {name: row[f"old_{name}"] for name in fields}
            event_changes = event_writes.changed_fields(old, task, fields)
            if event_changes:
                event = event_writes.task_updated(
                    user_id, task, event_changes, bool(row["was_completed"])
                )
                await event_writes.record(connection, [event], params["now"])
        return [task]
