"""The change feed (GET /changes): the events visible to the caller, oldest first, in the
reading order of services/events.py, from an opaque cursor; and the retention purge.

A cursor is urlsafe base64 of `1.<txid>.<event id>.<issued at, unix seconds>`: a position in the
reading order and when it was handed out. One older than EVENT_RETENTION_DAYS may point before
events already purged: 410, the client resyncs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, ClassVar

import orjson
from sqlalchemy import BigInteger, Executable, bindparam, delete, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from db_models import utcnow
from exceptions import AppError, BadRequestError
from services.events import AFTER, AUDIENCE, EVENTS, READING_ORDER, Position, horizon
from settings import Settings

_CURSOR = re.compile(r"1\.(\d{1,19})\.(\d{1,19})\.(\d{1,12})")
_MAX = 2**63 - 1
_USER = bindparam("feed_user", type_=BigInteger)
_LIMIT = bindparam("feed_limit", type_=BigInteger)
_FIELDS = ("id", "txid", "type", "occurred_at", "actor_id", "data")
PURGE_BATCH = 5000


class CursorExpiredError(AppError):
    status_code: ClassVar[int] = 410
    title: ClassVar[str] = "Gone"

    def __init__(self) -> None:
        super().__init__(
            "The cursor is older than the events kept (EVENT_RETENTION_DAYS): resync from the "
            "start (no cursor) after re-listing"
        )


def encode_cursor(position: Position, issued: datetime) -> str:
    raw = f"1.{position.txid}.{position.event_id}.{int(issued.timestamp())}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, settings: Settings, now: datetime) -> Position:
    """The position a cursor names: 400 if it is not one of ours, 410 if it is too old."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raw = ""
    match = _CURSOR.fullmatch(raw)
    if match is None or max(int(match[1]), int(match[2])) > _MAX:
        raise BadRequestError("Malformed cursor: pass back a next_cursor unchanged", field="cursor")
    issued = datetime.fromtimestamp(int(match[3]), tz=now.tzinfo)
    if issued < now - timedelta(days=settings.event_retention_days):
        raise CursorExpiredError()
    return Position(int(match[1]), int(match[2]))


@cache
def feed_statement(dialect: str) -> Executable:
    """The caller's visible events after a position: the owner arm (by the (owner_id, txid, id)
    index) and the audience arm, each ordered and limited, merged and limited again."""
    columns = [EVENTS.c[name] for name in _FIELDS]
    common = (AFTER, horizon(dialect))
    owned = select(*columns).where(EVENTS.c.owner_id == _USER, *common)
    owned = owned.order_by(*READING_ORDER).limit(_LIMIT)
    shared = (
        select(*columns)
        .join_from(AUDIENCE, EVENTS, EVENTS.c.id == AUDIENCE.c.event_id)
        .where(AUDIENCE.c.user_id == _USER, EVENTS.c.owner_id != _USER, *common)
        .order_by(*READING_ORDER)
        .limit(_LIMIT)
    )
    both = union_all(owned.subquery().select(), shared.subquery().select()).subquery("feed")
    return select(both).order_by(both.c.txid, both.c.id).limit(_LIMIT)


async def read_feed(
    engine: AsyncEngine, *, user_id: int, position: Position, limit: int
) -> tuple[Sequence[Any], Position, bool]:
    """Up to `limit` events after `position`, the position after them, and whether more
    followed (one more row is read to tell)."""
    params = {"feed_user": user_id, "feed_limit": limit + 1, **position.params()}
    async with engine.connect() as connection:
        statement = feed_statement(connection.dialect.name)
        rows = (await connection.execute(statement, params)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    if rows:
        position = Position(int(rows[-1].txid), int(rows[-1].id))
    return rows, position, more


def event_json(row: Any) -> bytes:
    """One event's public JSON `{id, type, occurred_at, actor_id, data}`, `data` passed through
    as stored: the feed's items and the webhook payloads (services/webhooks.py) alike."""
    json: bytes = (
        b'{"id":' + orjson.dumps(row.id)
        + b',"type":' + orjson.dumps(row.type)
        + b',"occurred_at":' + orjson.dumps(row.occurred_at, option=orjson.OPT_UTC_Z)
        + b',"actor_id":' + orjson.dumps(row.actor_id)
        + b',"data":' + row.data.encode() + b"}"
    )  # fmt: skip
    return json


def feed_body(rows: Sequence[Any], next_cursor: str, has_more: bool) -> bytes:
    """The response's JSON, `data` passed through as stored (pinned against ChangesPage by
    tests/test_events_feed.py on both databases)."""
    parts = [event_json(row) for row in rows]
    return (
        b'{"changes":[' + b",".join(parts) + b'],"next_cursor":' + orjson.dumps(next_cursor)
        + b',"has_more":' + (b"true" if has_more else b"false") + b"}"
    )  # fmt: skip


async def purge_events(engine: AsyncEngine, settings: Settings) -> int:
    """Delete the events older than EVENT_RETENTION_DAYS, PURGE_BATCH at a time (each batch its
    own transaction; audience rows go by ON DELETE CASCADE). Returns how many went."""
    cutoff = utcnow() - timedelta(days=settings.event_retention_days)
    batch = select(EVENTS.c.id).where(EVENTS.c.occurred_at < cutoff).limit(PURGE_BATCH)
    statement = delete(EVENTS).where(EVENTS.c.id.in_(batch.scalar_subquery()))
    total = 0
    while True:
        async with engine.begin() as connection:
            removed = (await connection.execute(statement)).rowcount
        total += removed
        if removed < PURGE_BATCH:
            return total
