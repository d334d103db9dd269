"""Events: one record of every change to a user's data, and the order it is read in.

Every write of tasks, tags, files, shares and comments inserts one `events` row per task it
changes, in its own transaction (C22): the activity log, the change feed, webhook deliveries
and mail are all read from these rows, nothing else records history.

Reading order. Event ids are allocated when a row is inserted but become visible when their
transaction commits, and on PostgreSQL those orders differ: a reader that kept "the last id
seen" would skip an id allocated early and committed late. So every event carries its
transaction's id (`txid`), readers order by (txid, id), and on PostgreSQL they only read events
of transactions older than the oldest one still running (`horizon`): every later commit then
sorts after what was read. SQLite runs one writer at a time (BEGIN IMMEDIATE), so its ids are
in commit order and `txid` is 0. Both differences are chosen once, by dialect, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    bindparam,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)

from event_tables import Event, EventAudience, EventConsumer

EVENTS = Event.metadata.tables[Event.__tablename__]
AUDIENCE = EventAudience.metadata.tables[EventAudience.__tablename__]
CONSUMERS = EventConsumer.metadata.tables[EventConsumer.__tablename__]


def txid(dialect: str) -> ColumnElement[Any]:
    """The value an event's `txid` is inserted with: the writing transaction's id
    (PostgreSQL's 64-bit xid8, as bigint), or 0 on SQLite."""
    if dialect == "postgresql":
        return cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    return literal(0, BigInteger)


def horizon(dialect: str) -> ColumnElement[bool]:
    """The events a reader may hand out now: on PostgreSQL those of transactions older than the
    oldest still running (any event committed later sorts after them); on SQLite all."""
    if dialect == "postgresql":
        oldest = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
        return EVENTS.c.txid < oldest
    return true()


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the reading order: after the event (txid, event_id). (0, 0) is the start."""

    txid: int = 0
    event_id: int = 0

    def params(self) -> dict[str, int]:
        """The bound parameters of `AFTER`."""
        return {"after_txid": self.txid, "after_id": self.event_id}


# The events after a `Position` (bound by `Position.params`), in reading order.
AFTER = tuple_(EVENTS.c.txid, EVENTS.c.id) > tuple_(
    bindparam("after_txid", type_=BigInteger), bindparam("after_id", type_=BigInteger)
)
READING_ORDER = (EVENTS.c.txid, EVENTS.c.id)


def visible_to(user: ColumnElement[Any]) -> ColumnElement[bool]:
    """The one visibility rule: the events `user` may see are those they own
    (`events.owner_id`) and those with an `event_audience` row naming them. The feed, activity,
    webhooks and mail all use it (the feed reads its two arms separately, by index)."""
    audience = select(AUDIENCE.c.event_id).where(
        AUDIENCE.c.event_id == EVENTS.c.id, AUDIENCE.c.user_id == user
    )
    return or_(EVENTS.c.owner_id == user, exists(audience))
