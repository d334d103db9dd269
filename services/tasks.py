"""Task use cases. Each public function is one unit of work ending in one commit."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from fastapi import BackgroundTasks
from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    all_,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from background_tasks import CompletedTask
from db_models import Task, TaskTag, User, utcnow
from exceptions import (
    BadRequestError,
    ConflictError,
    InvalidTokenError,
    PreconditionFailedError,
    TagNotFoundError,
    TaskAccessDeniedError,
    TaskNotFoundError,
    TooManyTagsError,
)
from models import MAX_TAGS_PER_TASK, Priority, TaskCreate
from services import files as file_service
from services.notifications import schedule_completion_email, schedule_completion_notice
from settings import Settings
from storage import Storage

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 3


def today() -> date:
    return datetime.now(UTC).date()


def overdue_condition(on: date | ColumnElement[date]) -> ColumnElement[bool]:
    return and_(Task.due_date < on, Task.completed.is_(False))


def not_overdue_condition(on: date | ColumnElement[date]) -> ColumnElement[bool]:
    # Spelled out rather than NOT(overdue): a NULL due date would make NOT(...) NULL.
    return or_(Task.due_date.is_(None), Task.due_date >= on, Task.completed.is_(True))


def _set_tags(task: Task, tags: list[str]) -> None:
    """Make the task's tags exactly `tags`, in order, touching only the rows that change."""
    if len(tags) > MAX_TAGS_PER_TASK:
        raise TooManyTagsError(task.id, MAX_TAGS_PER_TASK)
    existing = {row.tag: row for row in task.tag_rows}
    rows = []
    for position, tag in enumerate(tags):
        row = existing.get(tag) or TaskTag(tag=tag, user_id=task.user_id)
        row.position = position
        rows.append(row)
    task.tag_rows = rows


_USERS = User.metadata.tables["users"]
_BUMP_DATA_VERSION = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("user_id", type_=Integer))
    .values(data_version=_USERS.c.data_version + 1)
)


async def _record_write(session: AsyncSession, user_id: int, *tasks: Task) -> None:
    """Touch the tasks (their version moves with the UPDATE) and the user's data_version,
    which keys the stats cache (see services.stats)."""
    now = utcnow()
    for task in tasks:
        task.updated_at = now
    # Task rows first, then the user row: every write takes its row locks in that one order, so
    # two writers can wait for each other but never deadlock.
    await session.flush()
    # A Core UPDATE on the table: the ORM-enabled form would also evaluate the change against
    # the identity map (a third of a create's CPU), and nothing reads data_version back here.
    await session.execute(_BUMP_DATA_VERSION, {"user_id": user_id})


def _check_version(task: Task, allowed_versions: frozenset[int] | None) -> None:
    if allowed_versions is not None and task.version not in allowed_versions:
        raise PreconditionFailedError(task.id)


async def _reload(session: AsyncSession, task_id: int) -> Task:
    """Re-read a task that changed under us, locked: writers that lost a race take turns, so
    the retry cannot lose again however many clients write the same task at once."""
    await session.rollback()
    # Lock first, then load: a SELECT … FOR UPDATE that waited for the lock returns the newest
    # task row but the tags joined to it as its snapshot saw them (READ COMMITTED), i.e. from
    # before the write it waited for, and the retry would then drop that write's tags. A new
    # statement after the lock sees every committed tag (tags only change under this lock).
    locked = await session.execute(select(Task.id).where(Task.id == task_id).with_for_update())
    if locked.first() is None:
        raise TaskNotFoundError(task_id)
    task = await session.get(Task, task_id, populate_existing=True)
    if task is None:
        raise TaskNotFoundError(task_id)
    return task


def _apply(task: Task, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        if field == "tags":
            _set_tags(task, value)
        else:
            setattr(task, field, value)


_INSERT_TASK = insert(Task.metadata.tables["tasks"]).returning(Task.id)
_INSERT_TAGS = insert(TaskTag.metadata.tables["task_tags"])
_FIRST_VERSION = 1  # what the mapper's version counter gives a new row
_NEW_TASK_COLUMNS = (
    "user_id", "title", "description", "completed", "priority", "due_date", "created_at",
    "updated_at", "version",
)  # fmt: skip


def _create_in_one_statement() -> Executable:
    """PostgreSQL: the data_version bump, the task and its tags as one statement.

    WITH caller AS (UPDATE users … RETURNING id), task AS (INSERT INTO tasks … SELECT … FROM
    caller RETURNING id), tags AS (INSERT INTO task_tags … FROM task, unnest(:tags) WITH
    ORDINALITY) SELECT id FROM task. No row: the caller no longer exists (nothing inserted).
    On an autocommit connection it is one round trip and still atomic (one statement)."""
    users, tasks, tags = _USERS, Task.metadata.tables["tasks"], _INSERT_TAGS.table
    caller_id = bindparam("caller", type_=Integer)
    caller = (
        update(users)
        .where(users.c.id == caller_id)
        .values(data_version=users.c.data_version + 1)
        .returning(users.c.id.label("user_id"))
        .cte("caller")
    )
    now = bindparam("now", type_=tasks.c.created_at.type)
    fields = (bindparam(f"new_{name}", type_=tasks.c[name].type) for name in _NEW_TASK_COLUMNS[1:6])
    row = select(caller.c.user_id, *fields, now, now, literal(_FIRST_VERSION, Integer))
    task = insert(tasks).from_select(_NEW_TASK_COLUMNS, row).returning(tasks.c.id).cte("task")
    given = (
        func.unnest(bindparam("tags", type_=postgresql.ARRAY(tags.c.tag.type)))
        .table_valued("tag", with_ordinality="position")
        .render_derived()
    )
    tag_rows = select(task.c.id, caller_id, given.c.tag, given.c.position - 1)
    new_tags = (
        insert(tags)
        .from_select(
            ["task_id", "user_id", "tag", "position"], tag_rows.join_from(task, given, true())
        )
        .cte("tags")
    )
    return select(task.c.id).add_cte(new_tags)


_CREATE_IN_ONE = _create_in_one_statement()


async def create_task(
    engine: AsyncEngine, *, user_id: int, data: TaskCreate
) -> tuple[dict[str, Any], int]:
    """Insert the task; return its TaskRead fields (in TaskRead's order) and its version.

    The caller's existence is proven by the data_version UPDATE, which also locks the user row
    against a concurrent delete: no separate SELECT. On PostgreSQL the bump, the task and its
    tags are one statement (`_create_in_one_statement`); on SQLite three, in one transaction."""
    now = utcnow()
    values = {
        "user_id": user_id,
        "title": data.title,
        "description": data.description,
        "completed": data.completed,
        "priority": data.priority.value,
        "due_date": data.due_date,
        "created_at": now,
        "updated_at": now,
        "version": _FIRST_VERSION,
    }
    task_id: int | None
    if engine.dialect.name == "postgresql":
        params = {f"new_{name}": values[name] for name in _NEW_TASK_COLUMNS[1:6]}
        params.update(caller=user_id, now=now, tags=list(data.tags))
        async with engine.connect() as connection:
            single = await connection.execution_options(isolation_level="AUTOCOMMIT")
            task_id = (await single.execute(_CREATE_IN_ONE, params)).scalar_one_or_none()
    else:
        async with engine.begin() as connection:
            bumped = await connection.execute(_BUMP_DATA_VERSION, {"user_id": user_id})
            task_id = None
            if bumped.rowcount:
                task_id = (await connection.execute(_INSERT_TASK, values)).scalar_one()
                if data.tags:
                    await connection.execute(
                        _INSERT_TAGS,
                        [
                            {"task_id": task_id, "user_id": user_id, "tag": tag, "position": i}
                            for i, tag in enumerate(data.tags)
                        ],
                    )
    if task_id is None:
        raise InvalidTokenError()
    logger.info("task created task_id=%s user_id=%s", task_id, user_id)
    fields = {
        "id": task_id,
        "title": data.title,
        "description": data.description,
        "completed": data.completed,
        "priority": data.priority.value,
        "created_at": now,
        "updated_at": now,
        "due_date": data.due_date,
        "tags": list(data.tags),
        "user_id": user_id,
    }
    return fields, _FIRST_VERSION


async def _write_task(
    session: AsyncSession,
    *,
    user: User,
    task: Task,
    mutate: Callable[[Task], None],
    allowed_versions: frozenset[int] | None,
) -> Task:
    """Apply `mutate` and commit. With `allowed_versions` (If-Match) a task changed meanwhile is
    a 412; without, a concurrent write to the same task is absorbed by re-reading the task and
    applying `mutate` again, so concurrent changes to different fields all persist."""
    _check_version(task, allowed_versions)
    task_id, user_id = task.id, user.id  # plain values: a rollback expires the ORM objects
    for attempt in range(_MAX_ATTEMPTS):
        mutate(task)
        try:
            await _record_write(session, user_id, task)
            await session.commit()
        except StaleDataError:
            if allowed_versions is not None:
                await session.rollback()
                raise PreconditionFailedError(task_id) from None
            if attempt == _MAX_ATTEMPTS - 1:
                await session.rollback()
                raise ConflictError("The task keeps changing; retry the request") from None
            task = await _reload(session, task_id)
            await session.refresh(user)
        else:
            return task
    raise AssertionError("unreachable")


_TASKS = Task.metadata.tables["tasks"]
_TAGS = TaskTag.metadata.tables["task_tags"]
# Not named after columns: an UPDATE reserves those names for its SET clause.
_TASK_ID = bindparam("the_task", type_=Integer)
_USER_ID = bindparam("the_caller", type_=Integer)
_RETURNED = [
    _TASKS.c[name]
    for name in (
        "id", "title", "description", "completed", "priority", "created_at", "updated_at",
        "due_date", "user_id", "version",
    )
]  # fmt: skip
# Taken before a PATCH that completes the task: the lock holds until the commit, so the value
# read is the one this write replaces (exactly one of two racing completions sends the email).
_LOCK_COMPLETED = (
    select(_TASKS.c.completed)
    .where(_TASKS.c.id == _TASK_ID, _TASKS.c.user_id == _USER_ID)
    .with_for_update()
)
_TAGS_OF = select(_TAGS.c.tag).where(_TAGS.c.task_id == _TASK_ID).order_by(_TAGS.c.position)
_DELETE_TAGS = delete(_TAGS).where(_TAGS.c.task_id == _TASK_ID)
_BUMP_AND_NAME = _BUMP_DATA_VERSION.returning(_USERS.c.username, _USERS.c.email)
_OWNERSHIP = (
    select(_USERS.c.id, _TASKS.c.user_id)
    .select_from(_USERS.outerjoin(_TASKS, _TASKS.c.id == _TASK_ID))
    .where(_USERS.c.id == _USER_ID)
)
_PATCHES: dict[tuple[tuple[str, ...], bool], Executable] = {}


def _patch_statement(fields: tuple[str, ...], guarded: bool) -> Executable:
    """UPDATE … SET <the fields sent> RETURNING the row, built once per shape (values bound).

    Only the fields sent are written, so concurrent PATCHes of different fields all persist
    without re-reading; `guarded` adds If-Match's `version IN (…)`, checked under the row lock."""
    statement = _PATCHES.get((fields, guarded))
    if statement is None:
        values: dict[str, Any] = {name: bindparam(f"set_{name}") for name in fields}
        values["updated_at"] = bindparam("now")
        values["version"] = _TASKS.c.version + 1
        statement = update(_TASKS).where(_TASKS.c.id == _TASK_ID, _TASKS.c.user_id == _USER_ID)
        if guarded:
            statement = statement.where(_TASKS.c.version.in_(bindparam("allowed", expanding=True)))
        statement = statement.values(values).returning(*_RETURNED)
        _PATCHES[(fields, guarded)] = statement
    return statement


async def _refuse_write(
    connection: AsyncConnection, *, user_id: int, task_id: int, guarded: bool
) -> NoReturn:
    """Why the caller's UPDATE matched no row, as get_owned_task would say it (401/404/403),
    else the If-Match version that no longer holds (412)."""
    ids = {"the_caller": user_id, "the_task": task_id}
    row = (await connection.execute(_OWNERSHIP, ids)).first()
    if row is None:
        raise InvalidTokenError()
    if row.user_id is None:
        raise TaskNotFoundError(task_id)
    if row.user_id != user_id:
        raise TaskAccessDeniedError(task_id)
    if guarded:
        raise PreconditionFailedError(task_id)
    raise ConflictError("The task changed while it was being written; retry the request")


@dataclass
class _Patched:
    """What a PATCH wrote: the row (TaskRead's columns and `version`), its tags, whether it
    was complete before, and the owner's name and address (for the completion email)."""

    row: dict[str, Any]
    tags: list[str]
    was_completed: bool
    username: str
    email: str


@dataclass
class _Patch:
    """One PATCH request: who, which task, what (the columns sent, bound as `set_<name>`)."""

    user_id: int
    task_id: int
    changes: dict[str, Any]
    allowed_versions: frozenset[int] | None

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(sorted(name for name in self.changes if name != "tags"))

    @property
    def guarded(self) -> bool:
        return self.allowed_versions is not None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {f"set_{name}": self.changes[name] for name in self.fields}
        if "priority" in self.changes:
            params["set_priority"] = Priority(self.changes["priority"]).value
        if self.allowed_versions is not None:
            params["allowed"] = sorted(self.allowed_versions)
        params.update(now=utcnow(), the_caller=self.user_id, the_task=self.task_id)
        return params


async def _patch_in_transaction(engine: AsyncEngine, patch: _Patch) -> _Patched:
    """SQLite (and the portable form): [lock, only when completing], UPDATE … RETURNING, the
    tags, the data_version bump, in one transaction. Row locks: task first, then user."""
    user_id, task_id, changes, guarded = patch.user_id, patch.task_id, patch.changes, patch.guarded
    params = patch.params()
    ids = {"the_caller": user_id, "the_task": task_id}
    was_completed = True
    async with engine.begin() as connection:
        if changes.get("completed") is True:
            locked = (await connection.execute(_LOCK_COMPLETED, ids)).first()
            if locked is None:
                await _refuse_write(connection, user_id=user_id, task_id=task_id, guarded=guarded)
            was_completed = bool(locked.completed)
        statement = _patch_statement(patch.fields, guarded)
        found = (await connection.execute(statement, params)).mappings().first()
        if found is None:
            await _refuse_write(connection, user_id=user_id, task_id=task_id, guarded=guarded)
        row = dict(found)
        if "tags" in changes:
            tags = list(changes["tags"])
            await connection.execute(_DELETE_TAGS, ids)
            if tags:
                await connection.execute(
                    _INSERT_TAGS,
                    [
                        {"task_id": task_id, "user_id": user_id, "tag": tag, "position": position}
                        for position, tag in enumerate(tags)
                    ],
                )
        else:
            # After the UPDATE: the row lock is ours, so no writer of this task is mid-way.
            tags = list((await connection.execute(_TAGS_OF, ids)).scalars())
        owner = (await connection.execute(_BUMP_AND_NAME, {"user_id": user_id})).first()
        if owner is None:
            raise InvalidTokenError()
    return _Patched(row, tags, was_completed, owner.username, owner.email)


_PATCHES_IN_ONE: dict[tuple[tuple[str, ...], bool, bool], Executable] = {}


def _patch_in_one_statement(fields: tuple[str, ...], guarded: bool, tags: bool) -> Executable:
    """PostgreSQL: the whole PATCH as one statement (built once per shape, values bound).

    WITH locked AS (SELECT … FOR UPDATE: the newest committed row, [If-Match checked on it]),
         patched AS (UPDATE tasks SET <fields sent> FROM locked … RETURNING the row and the
                     locked row's `completed`),
         [tags: DELETE the tags not listed; INSERT … ON CONFLICT DO UPDATE the positions],
         bumped AS (UPDATE users SET data_version … WHERE id = (SELECT user_id FROM patched))
    SELECT patched.*, bumped.*, the task's version and tags as this statement's snapshot saw them.

    Each CTE waits for the one it reads, so locks go task, then user, as in every write. The
    snapshot columns are only right when no write committed between the statement's snapshot
    and its row lock, which `snapshot_version + 1 == version` tells the caller."""
    key = (fields, guarded, tags)
    statement = _PATCHES_IN_ONE.get(key)
    if statement is not None:
        return statement
    locked_query = (
        select(
            _TASKS.c.id,
            _TASKS.c.completed.label("was_completed"),
        )
        .where(_TASKS.c.id == _TASK_ID, _TASKS.c.user_id == _USER_ID)
        .with_for_update()
    )
    if guarded:
        locked_query = locked_query.where(
            _TASKS.c.version.in_(bindparam("allowed", expanding=True))
        )
    locked = locked_query.cte("locked")
    values: dict[str, Any] = {name: bindparam(f"set_{name}") for name in fields}
    values["updated_at"] = bindparam("now")
    values["version"] = _TASKS.c.version + 1
    patched = (
        update(_TASKS)
        .where(_TASKS.c.id == locked.c.id)
        .values(values)
        .returning(*_RETURNED, locked.c.was_completed)
        .cte("patched")
    )
    patched_id = select(patched.c.id).scalar_subquery()
    bumped = (
        update(_USERS)
        .where(_USERS.c.id == select(patched.c.user_id).scalar_subquery())
        .values(data_version=_USERS.c.data_version + 1)
        .returning(_USERS.c.username, _USERS.c.email)
        .cte("bumped")
    )
    seen_version = select(_TASKS.c.version).where(_TASKS.c.id == _TASK_ID).scalar_subquery()
    seen_tags = (
        select(func.array_agg(_TAGS.c.tag).aggregate_order_by(_TAGS.c.position))
        .where(_TAGS.c.task_id == _TASK_ID)
        .scalar_subquery()
    )
    statement = select(
        *patched.c,
        bumped.c.username,
        bumped.c.email,
        seen_version.label("snapshot_version"),
        seen_tags.label("snapshot_tags"),
    ).select_from(patched.join(bumped, true()))
    if tags:
        listed = bindparam("tags", type_=postgresql.ARRAY(_TAGS.c.tag.type))
        # Disjoint rows (tags not listed / tags listed), so the two never touch the same row.
        dropped = delete(_TAGS).where(_TAGS.c.task_id == patched_id, _TAGS.c.tag != all_(listed))
        given = func.unnest(listed).table_valued("tag", with_ordinality="position").render_derived()
        upsert = postgresql.insert(_TAGS).from_select(
            ["task_id", "user_id", "tag", "position"],
            select(patched.c.id, patched.c.user_id, given.c.tag, given.c.position - 1).join_from(
                patched, given, true()
            ),
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[_TAGS.c.task_id, _TAGS.c.tag],
            set_={"position": upsert.excluded.position},
        )
        statement = statement.add_cte(dropped.cte("dropped")).add_cte(upsert.cte("listed"))
    _PATCHES_IN_ONE[key] = statement
    return statement


async def _patch_postgresql(engine: AsyncEngine, patch: _Patch) -> _Patched:
    user_id, task_id, changes = patch.user_id, patch.task_id, patch.changes
    params = patch.params()
    if "tags" in changes:
        params["tags"] = list(changes["tags"])
    statement = _patch_in_one_statement(patch.fields, patch.guarded, "tags" in changes)
    async with engine.connect() as connection:
        single = await connection.execution_options(isolation_level="AUTOCOMMIT")
        found = (await single.execute(statement, params)).mappings().first()
        if found is None:
            await _refuse_write(single, user_id=user_id, task_id=task_id, guarded=patch.guarded)
        row = dict(found)
        if "tags" in changes:
            tags = list(changes["tags"])
        elif row["snapshot_version"] + 1 == row["version"]:
            tags = list(row["snapshot_tags"] or ())
        else:
            # Another write committed while this one waited for the row lock, so the tags this
            # statement's snapshot saw may be older than the row it wrote. Answer with the task
            # as it is now (its own version: body and ETag always agree).
            from services import task_reads

            current = await task_reads.get_owned_task(engine, user_id=user_id, task_id=task_id)
            row = {**current, "was_completed": row["was_completed"], **_owner(row)}
            tags = task_reads.task_fields(current)["tags"]
    return _Patched(row, tags, bool(row["was_completed"]), row["username"], row["email"])


def _owner(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"username": row["username"], "email": row["email"]}


async def update_task(
    engine: AsyncEngine,
    *,
    user_id: int,
    task_id: int,
    changes: dict[str, Any],
    background: BackgroundTasks,
    settings: Settings,
    allowed_versions: frozenset[int] | None = None,
) -> tuple[dict[str, Any], int]:
    """PATCH in Core: only the fields sent are written, so concurrent PATCHes of different
    fields all persist without re-reading. Returns TaskRead's fields (in order) and the new
    version. One statement on PostgreSQL, one transaction of a few on SQLite."""
    if len(changes.get("tags") or ()) > MAX_TAGS_PER_TASK:
        raise TooManyTagsError(task_id, MAX_TAGS_PER_TASK)
    write = _patch_postgresql if engine.dialect.name == "postgresql" else _patch_in_transaction
    done = await write(engine, _Patch(user_id, task_id, changes, allowed_versions))
    row = done.row
    task = {**{name: row[name] for name in _TASK_READ_ORDER}, "tags": done.tags}
    task["user_id"] = row["user_id"]
    logger.info("task updated task_id=%s fields=%s", task_id, ",".join(sorted(changes)))
    if changes.get("completed") is True and not done.was_completed:
        schedule_completion_notice(
            background,
            settings,
            to=done.email,
            name=done.username,
            tasks=[CompletedTask(id=task_id, title=row["title"])],
        )
    return task, int(row["version"])


_TASK_READ_ORDER = (
    "id", "title", "description", "completed", "priority", "created_at", "updated_at", "due_date",
)  # fmt: skip


async def delete_task(
    session: AsyncSession,
    *,
    user: User,
    task: Task,
    storage: Storage,
    background: BackgroundTasks,
    allowed_versions: frozenset[int] | None = None,
) -> None:
    """Delete the task; its file rows go with it (ON DELETE CASCADE), their blobs after."""
    _check_version(task, allowed_versions)
    task_id, user_id = task.id, user.id  # plain values: a rollback expires the ORM objects
    keys = await file_service.storage_keys_of_task(session, task_id=task_id)
    await session.delete(task)
    try:
        await _record_write(session, user_id)
        await session.commit()
    except StaleDataError:
        # Changed (or deleted) since it was read: with If-Match that is the 412 it asked for;
        # without, the client wanted it gone whatever its state, so delete what is there now.
        if allowed_versions is not None:
            await session.rollback()
            raise PreconditionFailedError(task_id) from None
        current = await _reload(session, task_id)
        await session.delete(current)
        await _record_write(session, user_id)
        await session.commit()
    file_service.schedule_blob_cleanup(background, storage, keys)
    logger.info("task deleted task_id=%s user_id=%s files=%s", task_id, user_id, len(keys))


async def bulk_update(
    session: AsyncSession,
    *,
    user: User,
    task_ids: list[int],
    changes: dict[str, Any],
    background: BackgroundTasks,
    settings: Settings,
) -> list[Task]:
    """Apply one change to many tasks: all of them, or (any id not the caller's) none."""
    if not changes:
        raise BadRequestError("No fields to update were given")
    wanted = sorted(set(task_ids))
    # Locking in id order means two overlapping bulk updates cannot deadlock each other. Lock,
    # then load (as in _reload): tags joined to a locking SELECT are its snapshot's, which may
    # predate a write it waited for.
    owned = (Task.id.in_(wanted), Task.user_id == user.id)
    await session.execute(select(Task.id).where(*owned).order_by(Task.id).with_for_update())
    stmt = select(Task).where(*owned).order_by(Task.id).execution_options(populate_existing=True)
    tasks = list((await session.scalars(stmt)).unique())
    found = {task.id for task in tasks}
    missing = [task_id for task_id in wanted if task_id not in found]
    if missing:
        # Another user's task is reported as missing: a bulk body must not probe for ids.
        raise TaskNotFoundError(missing[0])
    newly_completed = [task for task in tasks if not task.completed]
    for task in tasks:
        _apply(task, changes)
    await _record_write(session, user.id, *tasks)
    await session.commit()
    logger.info("bulk update task_count=%s user_id=%s", len(tasks), user.id)
    newly_completed = [task for task in newly_completed if task.completed]
    schedule_completion_email(background, settings, user=user, tasks=newly_completed)
    return tasks


async def add_tags(
    session: AsyncSession,
    *,
    user: User,
    task: Task,
    tags: list[str],
    allowed_versions: frozenset[int] | None = None,
) -> Task:
    if all(tag in task.tags for tag in tags):
        _check_version(task, allowed_versions)
        return task

    def mutate(current: Task) -> None:
        _set_tags(current, current.tags + [tag for tag in tags if tag not in current.tags])

    task = await _write_task(
        session, user=user, task=task, mutate=mutate, allowed_versions=allowed_versions
    )
    logger.info("tags added task_id=%s", task.id)
    return task


async def remove_tag(
    session: AsyncSession,
    *,
    user: User,
    task: Task,
    tag: str,
    allowed_versions: frozenset[int] | None = None,
) -> Task:
    def mutate(current: Task) -> None:
        if tag not in current.tags:
            raise TagNotFoundError(current.id, tag)
        _set_tags(current, [kept for kept in current.tags if kept != tag])

    task = await _write_task(
        session, user=user, task=task, mutate=mutate, allowed_versions=allowed_versions
    )
    logger.info("tag removed task_id=%s", task.id)
    return task
