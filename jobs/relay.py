"""The relay: from the committed event record to jobs.

Work after a write (mail, blob cleanup, webhook deliveries) is never queued by the request: the
write commits its events (services/event_writes.py), and the relay, a job run every second,
reads the events after its position (`event_consumers` row "relay") in the feed's reading order
and up to the horizon (services/events.py), derives their jobs, and moves its position past
them. A crash between a commit and the relay's next run only delays the work.

One relay runs at a time: procrastinate's job lock "relay" among the workers of one queue (on
PostgreSQL, all of them); on SQLite, where each API process has a queue of its own, the process
holding an exclusive lock on `<database file>.relay-lock` relays. Its transaction writes only at
its end (deliveries, position), so it holds a transaction id for milliseconds: the feed's
horizon (the oldest running writer) is not held back by it.

Webhook deliveries are rows (services/webhooks.plan) inserted in the relay's transaction, at
most one per endpoint and event whatever is read twice; their jobs only send them.

PostgreSQL: jobs are deferred, then the position is committed; a crash
in between derives them again (at least once). SQLite: jobs live in process memory, so the
position passes a batch only once every job derived from it has finished; a killed process
re-derives the batch on its next start.
"""

from __future__ import annotations

import fcntl
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import procrastinate
from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from background_tasks import unsent
from db_config import normalize_database_url
from db_models import utcnow
from event_tables import EventType
from jobs.engine import NAMESPACE, Resources, defer, is_durable
from services import webhooks
from services.events import AFTER, CONSUMERS, EVENTS, READING_ORDER, Position, horizon
from settings import Settings

logger = logging.getLogger(__name__)

CONSUMER = "relay"
BATCH = 500
# One run stops taking new batches after this long, so other jobs get the lock's turn.
RUN_SECONDS = 10.0
_FINISHED = {"succeeded", "failed", "cancelled", "aborted"}
_MAIL_WHAT = {
    "completion_mail": "completion email",
    "share_mail": "share email",
    "comment_mail": "comment email",
}
MAIL_JOBS = frozenset(_MAIL_WHAT)


@dataclass(frozen=True)
class JobSpec:
    """One job to defer: its name in jobs/work.py and its arguments."""

    name: str
    args: dict[str, Any]


@dataclass
class _Waiting:
    """SQLite: a batch read, its jobs deferred in memory, its position not yet saved."""

    position: Position
    job_ids: list[int] = field(default_factory=list)


_WAITING: weakref.WeakKeyDictionary[Any, _Waiting] = weakref.WeakKeyDictionary()
_HOLDERS: weakref.WeakKeyDictionary[Any, IO[bytes]] = weakref.WeakKeyDictionary()


def _holds_file_lock(app: procrastinate.App, settings: Settings) -> bool:
    """SQLite: whether this app's process is the database file's relay (taken once, kept
    until the process ends)."""
    if app in _HOLDERS:
        return True
    path = normalize_database_url(settings.database_url).database or ""
    handle = open(f"{path}.relay-lock", "ab")  # noqa: SIM115  # held for the app's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _HOLDERS[app] = handle
    return True


# The only events whose `data` the relay reads (_completions, _notices): the rest of a batch
# (most of it: task.created, task.updated...) is not fetched nor sent over the wire.
_READS_DATA = (EventType.TASK_COMPLETED, EventType.SHARE_CREATED, EventType.COMMENT_CREATED)


def _read(dialect: str) -> Any:
    columns: list[Any] = [EVENTS.c[n] for n in ("id", "txid", "type", "occurred_at", "actor_id")]
    data = case((EVENTS.c.type.in_(_READS_DATA), EVENTS.c.data), else_=None).label("data")
    columns += [EVENTS.c.owner_id, EVENTS.c.task_id, data, EVENTS.c.internal]
    statement = select(*columns).where(AFTER, horizon(dialect)).order_by(*READING_ORDER)
    return statement.limit(BATCH)


_READ = {name: _read(name) for name in ("postgresql", "sqlite")}
_NAMED = CONSUMERS.c.name == CONSUMER
_POSITION = select(CONSUMERS.c.txid, CONSUMERS.c.event_id).where(_NAMED)
_MOVE = update(CONSUMERS).where(_NAMED)
_START = insert(CONSUMERS).values(name=CONSUMER, txid=0, event_id=0, updated_at=bindparam("now"))


# --- what each event asks for -----------------------------------------------------------------


def _completions(rows: Sequence[Row[Any]]) -> list[JobSpec]:
    """One completion email per owner per write (the events one request wrote share their
    time and actor), naming every task it completed."""
    groups: dict[tuple[int, Any, int], list[list[Any]]] = {}
    for row in rows:
        if row.type == EventType.TASK_COMPLETED:
            task = orjson.loads(row.data)["task"]
            key = (row.owner_id, row.occurred_at, row.actor_id)
            groups.setdefault(key, []).append([task["id"], task["title"]])
    return [
        JobSpec("completion_mail", {"owner_id": owner, "tasks": tasks})
        for (owner, _, _), tasks in groups.items()
    ]


def _notices(row: Row[Any]) -> list[JobSpec]:
    """The mail and cleanup one event asks for."""
    specs = []
    if row.internal is not None:
        keys = orjson.loads(row.internal).get("blob_keys") or []
        if keys:
            specs.append(JobSpec("delete_blobs", {"keys": keys}))
    if row.type == EventType.SHARE_CREATED:
        data = orjson.loads(row.data)
        if "changes" not in data:  # a new share, not a permission change
            share = {"task_id": row.task_id, "owner_id": row.owner_id}
            share |= {"recipient_id": data["shared_with"]["id"], "permission": data["permission"]}
            specs += [JobSpec("share_mail", share | {"to": to}) for to in ("recipient", "owner")]
    elif row.type == EventType.COMMENT_CREATED and row.actor_id != row.owner_id:
        comment = orjson.loads(row.data)["comment"]
        args = {"task_id": row.task_id, "owner_id": row.owner_id}
        args |= {"author": comment["author"]["username"], "content": comment["content"]}
        specs.append(JobSpec("comment_mail", args))
    return specs


def derive(rows: Sequence[Row[Any]], *, mail: bool = True) -> list[JobSpec]:
    """The jobs a batch of events asks for, in event order (completion mail last). Without
    `mail` (no SMTP_HOST) the emails are logged as not sent here, not made jobs that would
    only log it."""
    specs = [spec for row in rows for spec in _notices(row)] + _completions(rows)
    if mail:
        return specs
    for spec in specs:
        if spec.name in MAIL_JOBS:
            ids = spec.args.get("task_id") or ",".join(str(t[0]) for t in spec.args["tasks"])
            unsent(_MAIL_WHAT[spec.name], f"task_id{'s' * ('tasks' in spec.args)}={ids}")
    return [spec for spec in specs if spec.name not in MAIL_JOBS]


# --- the run -----------------------------------------------------------------------------------


def release(app: procrastinate.App) -> None:
    """SQLite: give up being the relay (the app is closing), so another process can be."""
    handle = _HOLDERS.pop(app, None)
    if handle is not None:
        handle.close()
    _WAITING.pop(app, None)


def delivery_lock(delivery_id: int) -> str:
    """The queueing lock of a delivery's job: at most one waits per delivery."""
    return f"delivery:{delivery_id}"


async def _position(connection: AsyncConnection) -> Position:
    row = (await connection.execute(_POSITION)).first()
    if row is None:  # migration 0012 creates it; a database emptied by hand may lack it
        await connection.execute(_START, {"now": utcnow()})
        return Position()
    return Position(row.txid, row.event_id)


async def _save(connection: AsyncConnection, position: Position) -> None:
    values = {"txid": position.txid, "event_id": position.event_id, "updated_at": utcnow()}
    await connection.execute(_MOVE.values(values))


async def _defer(app: procrastinate.App, specs: Sequence[JobSpec]) -> list[int]:
    """One batch insert per kind of job (PostgreSQL: one round trip each, not one per job)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec.args)
    ids = []
    for name, args in by_name.items():
        ids += await app.configure_task(f"{NAMESPACE}:{name}").batch_defer_async(*args)
    return ids


def _finished(app: procrastinate.App, job_ids: Sequence[int]) -> bool:
    """SQLite (in-memory jobs): whether every job is done (deleted on success, or final)."""
    jobs = app.connector.jobs  # type: ignore[attr-defined]  # the in-memory connector's table
    return all(job_id not in jobs or jobs[job_id]["status"] in _FINISHED for job_id in job_ids)


async def _step(app: procrastinate.App, found: Resources) -> int:
    """Read one batch, defer its jobs, and move on (PostgreSQL) or wait for them (SQLite).
    Returns how many events it read."""
    durable = is_durable(found.settings)
    if not durable and not _holds_file_lock(app, found.settings):
        return 0
    async with found.engine.begin() as connection:
        waiting = None if durable else _WAITING.get(app)
        if waiting is not None:
            if not _finished(app, waiting.job_ids):
                return 0
            await _save(connection, waiting.position)
            del _WAITING[app]
        start = await _position(connection) if waiting is None else waiting.position
        read = _READ[connection.dialect.name]
        rows = list(await connection.execute(read, start.params()))
        if not rows:
            return 0
        job_ids = await _defer(app, derive(rows, mail=found.settings.smtp_host is not None))
        deliveries = await webhooks.plan(connection, [row.id for row in rows])
        end = Position(rows[-1].txid, rows[-1].id)
        if durable or not job_ids:
            await _save(connection, end)
        else:
            _WAITING[app] = _Waiting(end, job_ids)
    # After the commit (a job must find its row); one lost here is found by the sweep.
    for delivery_id in deliveries:
        await defer(app, "deliver_webhook", lock=delivery_lock(delivery_id), id=delivery_id)
    logger.info("relay read=%s jobs=%s deliveries=%s", len(rows), len(job_ids), len(deliveries))
    return len(rows)


async def run(app: procrastinate.App, found: Resources) -> None:
    """Relay batches until caught up (or RUN_SECONDS have passed)."""
    started = time.monotonic()
    while await _step(app, found) == BATCH and time.monotonic() - started < RUN_SECONDS:
        pass
