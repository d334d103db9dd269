"""The event inserts: one function per kind of event, each run in the write's own transaction
(C22). Every write path calls these; no route writes events by hand.

An event row follows the conventions of services/events.py: `txid` from `events.txid`, the
owner of the task, the task, the resource (task, file, comment, or the share's recipient) and
`data`, the public JSON text. Its audience (who besides the owner may see it) is the task's
share recipients at the time of the event, plus the recipient a share event names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Integer, String, bindparam, insert, select, true, union
from sqlalchemy.ext.asyncio import AsyncConnection

from db_models import TaskShare, UTCDateTime
from event_tables import EventType
from services.events import AUDIENCE, EVENTS, txid
from services.task_json import task_json

_SHARES = TaskShare.metadata.tables[TaskShare.__tablename__]
_DUMP = orjson.OPT_UTC_Z


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to insert. `audience`: also show it to the task's share recipients;
    `recipient`: also to this user (a share event's)."""

    type: EventType
    actor_id: int
    owner_id: int
    task_id: int
    resource_id: int | None
    data: bytes
    internal: bytes | None = None
    audience: bool = True
    recipient: int | None = None


def _insert_event(dialect: str) -> Any:
    values = {
        "txid": txid(dialect),
        "occurred_at": bindparam("e_at", type_=UTCDateTime),
        "type": bindparam("e_type", type_=String),
        "actor_id": bindparam("e_actor", type_=Integer),
        "owner_id": bindparam("e_owner", type_=Integer),
        "task_id": bindparam("e_task", type_=Integer),
        "resource_id": bindparam("e_resource", type_=Integer),
        "data": bindparam("e_data", type_=String),
        "internal": bindparam("e_internal", type_=String),
    }
    return insert(EVENTS).values(values).returning(EVENTS.c.id)


_INSERT = {name: _insert_event(name) for name in ("postgresql", "sqlite")}
_EVENT_ID = bindparam("e_id", type_=BigInteger)
_SHARED = select(_SHARES.c.user_id, _EVENT_ID).where(
    _SHARES.c.task_id == bindparam("e_task", type_=Integer)
)
_RECIPIENT = select(bindparam("e_recipient", type_=Integer), _EVENT_ID)
_AUDIENCE = {
    (shared, recipient): insert(AUDIENCE).from_select(
        ["user_id", "event_id"],
        union(_SHARED, _RECIPIENT) if shared and recipient else _SHARED if shared else _RECIPIENT,
    )
    for shared in (True, False)
    for recipient in (True, False)
    if shared or recipient
}


def _pg_statement(shared: bool, recipient: bool) -> Any:
    """PostgreSQL: the event and its audience rows as one statement (one round trip):
    WITH event AS (INSERT INTO events … RETURNING id), audience AS (INSERT INTO event_audience
    SELECT user_id, event.id FROM task_shares, event WHERE task_id = … [UNION the recipient])."""
    event = _INSERT["postgresql"].cte("event")
    sources = []
    if shared:
        task = _SHARES.c.task_id == bindparam("e_task", type_=Integer)
        joined = _SHARES.join(event, true())  # one event row: no cartesian product to fear
        sources.append(select(_SHARES.c.user_id, event.c.id).select_from(joined).where(task))
    if recipient:
        sources.append(select(bindparam("e_recipient", type_=Integer), event.c.id))
    rows = union(*sources) if len(sources) > 1 else sources[0]
    audience = insert(AUDIENCE).from_select(["user_id", "event_id"], rows).cte("audience")
    return select(event.c.id).add_cte(audience)


_PG = {key: _pg_statement(*key) for key in _AUDIENCE}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


async def record(connection: AsyncConnection, events: Sequence[NewEvent], now: datetime) -> None:
    """Insert the events and their audience rows on the write's connection (its transaction)."""
    dialect = connection.dialect.name
    statement = _INSERT[dialect]
    for event in events:
        params = {
            "e_at": now, "e_type": event.type.value, "e_actor": event.actor_id,
            "e_owner": event.owner_id, "e_task": event.task_id, "e_resource": event.resource_id,
            "e_data": event.data.decode(), "e_internal": _text(event.internal),
        }  # fmt: skip
        key = (event.audience, event.recipient is not None)
        if key not in _AUDIENCE:
            await connection.execute(statement, params)
        elif dialect == "postgresql":
            await connection.execute(_PG[key], {**params, "e_recipient": event.recipient})
        else:
            event_id = (await connection.execute(statement, params)).scalar_one()
            audience = {"e_id": event_id, "e_task": event.task_id, "e_recipient": event.recipient}
            await connection.execute(_AUDIENCE[key], audience)


# --- tasks -----------------------------------------------------------------------------------


def task_created(actor_id: int, task: Mapping[str, Any]) -> NewEvent:
    """task.created: `{"task": <TaskRead>}`; a new task has no shares (no audience)."""
    data = b'{"task":' + task_json(task) + b"}"
    return NewEvent(
        EventType.TASK_CREATED, actor_id, task["user_id"], task["id"], task["id"], data,
        audience=False,
    )  # fmt: skip


def task_created_data_tail(task: Mapping[str, Any]) -> bytes:
    """task.created's `data` after `{"task":{"id":` and the id, for the PostgreSQL shortcut
    that learns the id in the statement (`'{"task":{"id":' || id || tail`)."""
    whole = task_json({**task, "id": 0})
    return whole[len(b'{"id":0') :] + b"}"


def changed_fields(
    old: Mapping[str, Any], new: Mapping[str, Any], fields: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """`{field: {"old": …, "new": …}}` for the fields whose value changed (tags as lists)."""
    return {name: {"old": old[name], "new": new[name]} for name in fields if old[name] != new[name]}


def task_updated(
    actor_id: int, task: Mapping[str, Any], changes: Mapping[str, Any], was_completed: bool
) -> NewEvent:
    """task.updated, or task.completed when `completed` went false → true:
    `{"task": <TaskRead after>, "changes": {...}}`."""
    completed = bool(task["completed"]) and not was_completed
    kind = EventType.TASK_COMPLETED if completed else EventType.TASK_UPDATED
    data = b'{"task":' + task_json(task) + b',"changes":' + orjson.dumps(changes, option=_DUMP)
    return NewEvent(kind, actor_id, task["user_id"], task["id"], task["id"], data + b"}")


def task_update_events(
    user_id: int,
    old: Mapping[int, Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    sent: Mapping[str, Any],
) -> list[NewEvent]:
    """One task.updated / task.completed per task whose sent fields changed value."""
    events = []
    for task in tasks:
        before = old[task["id"]]
        changes = changed_fields(before, task, sorted(sent))
        if changes:
            was = bool(before["completed"])
            events.append(task_updated(user_id, task, changes, was))
    return events


def task_deleted(actor_id: int, owner_id: int, task_id: int, blob_keys: list[str]) -> NewEvent:
    """task.deleted: the tombstone `{"task": {"id": N}}`; internal: the files' blob keys."""
    data = orjson.dumps({"task": {"id": task_id}})
    internal = orjson.dumps({"blob_keys": blob_keys})
    return NewEvent(EventType.TASK_DELETED, actor_id, owner_id, task_id, task_id, data, internal)


# --- files, shares, comments -----------------------------------------------------------------


def file_uploaded(
    actor_id: int, owner_id: int, file_json: bytes, task_id: int, file_id: int
) -> NewEvent:
    """file.uploaded: `{"task_id": N, "file": <FileRead>}`."""
    data = b'{"task_id":' + str(task_id).encode() + b',"file":' + file_json + b"}"
    return NewEvent(EventType.FILE_UPLOADED, actor_id, owner_id, task_id, file_id, data)


def file_deleted(
    actor_id: int, owner_id: int, task_id: int, file_id: int, filename: str, key: str
) -> NewEvent:
    """file.deleted: `{"task_id": N, "file": {"id": F, "filename": …}}`; internal: its blob."""
    data = orjson.dumps({"task_id": task_id, "file": {"id": file_id, "filename": filename}})
    internal = orjson.dumps({"blob_keys": [key]})
    return NewEvent(EventType.FILE_DELETED, actor_id, owner_id, task_id, file_id, data, internal)


def share_event(
    kind: EventType,
    actor_id: int,
    owner_id: int,
    task_id: int,
    recipient: Mapping[str, Any],
    permission: str,
    changes: Mapping[str, Any] | None = None,
) -> NewEvent:
    """share.created / share.deleted (a PUT is share.created with `changes`): `{"task_id",
    "shared_with": {id, username}, "permission"}`; the recipient is always in the audience."""
    body: dict[str, Any] = {
        "task_id": task_id,
        "shared_with": {"id": recipient["id"], "username": recipient["username"]},
        "permission": permission,
    }
    if changes is not None:
        body["changes"] = changes
    data = orjson.dumps(body)
    return NewEvent(
        kind, actor_id, owner_id, task_id, recipient["id"], data, recipient=recipient["id"]
    )


def comment_event(
    kind: EventType,
    actor_id: int,
    owner_id: int,
    task_id: int,
    comment_id: int,
    comment_json: bytes | None = None,
    changes: Mapping[str, Any] | None = None,
) -> NewEvent:
    """comment.created/updated: `{"task_id", "comment": <CommentRead>}` (+ `changes`);
    comment.deleted: `{"task_id", "comment": {"id": C}}`."""
    comment = comment_json if comment_json is not None else orjson.dumps({"id": comment_id})
    data = b'{"task_id":' + str(task_id).encode() + b',"comment":' + comment
    if changes is not None:
        data += b',"changes":' + orjson.dumps(changes, option=_DUMP)
    return NewEvent(kind, actor_id, owner_id, task_id, comment_id, data + b"}")
