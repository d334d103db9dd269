"""The tables of events and of what is made of them: the change feed's readers (the job relay)
and webhooks. Imported by alembic/env.py with db_models, so the migrations see them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from db_models import Base, utcnow

# As db_models: SQLite never hands out a deleted newest row's id again.
_NEVER_REUSE_IDS = {"sqlite_autoincrement": True}
# 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is 64-bit already (and only that
# spelling is an alias of the rowid).
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


class EventType(enum.StrEnum):
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_DELETED = "task.deleted"
    TASK_COMPLETED = "task.completed"
    FILE_UPLOADED = "file.uploaded"
    FILE_DELETED = "file.deleted"
    SHARE_CREATED = "share.created"
    SHARE_DELETED = "share.deleted"
    COMMENT_CREATED = "comment.created"
    COMMENT_UPDATED = "comment.updated"
    COMMENT_DELETED = "comment.deleted"

    @property
    def resource_type(self) -> str:
        return self.value.split(".", 1)[0]

    @property
    def action(self) -> str:
        return self.value.split(".", 1)[1]


class Event(Base):
    """One change to a user's data (services/events.py), written in the change's own
    transaction: the activity log, the change feed, webhooks and mail are views of these rows.

    `txid` is the writing transaction's id on PostgreSQL (0 on SQLite, whose writers commit in
    id order): the feed and the relay read in (txid, id) order up to the oldest transaction
    still running, so an event whose id was allocated early but committed late is never
    skipped. `task_id` has no foreign key: a deleted task's events (its tombstone) stay.
    `data` is the event's public JSON; `internal` what only jobs read (blob keys to remove)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_txid_id", "txid", "id"),
        Index("ix_events_owner_id_txid_id", "owner_id", "txid", "id"),
        Index("ix_events_task_id_id", "task_id", "id"),
        Index("ix_events_occurred_at", "occurred_at"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(EVENT_ID, primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[int]
    resource_id: Mapped[int | None]
    data: Mapped[str] = mapped_column(String)
    internal: Mapped[str | None] = mapped_column(String)


class EventAudience(Base):
    """Who besides the owner may see an event: the task's share recipients when it happened
    (and the recipient a share event names). The feed, activity and webhooks read an event
    for its owner from `events.owner_id`, for anyone else through these rows."""

    __tablename__ = "event_audience"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(
        EVENT_ID,
        ForeignKey("events.id", ondelete="CASCADE"),
        primary_key=True,
    )


class EventConsumer(Base):
    """How far a reader of every event (the job relay) has got, in the feed's (txid, id)
    order: it resumes after a restart from here, so a committed event is never left unread."""

    __tablename__ = "event_consumers"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class Webhook(Base):
    """A user's webhook endpoint: where their events are POSTed, signed with `secret` per the
    Standard Webhooks specification. `events` is the space-separated types it wants ("*" all);
    `failing_since` marks the first failure of an unbroken run of failures (cleared by a
    success); an endpoint failing that long (WEBHOOK_DISABLE_AFTER_DAYS) is disabled."""

    __tablename__ = "webhooks"
    __table_args__ = (_NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(1000))
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event sent (or to be sent) to one endpoint: its log and its state. `payload` is the
    exact body every attempt sends (the same bytes, the same `webhook-id`). At most one
    delivery per (webhook, event): the relay may meet an event twice after a crash."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
        Index("uq_webhook_deliveries_webhook_id_event_id", "webhook_id", "event_id", unique=True),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
