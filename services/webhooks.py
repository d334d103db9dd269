"""Webhooks: a user's endpoints (created, listed, changed, removed), the deliveries planned for
each event they may see, and the upkeep the job engine runs (due deliveries, disabling
endpoints that fail for days). One attempt is services/webhook_delivery.py (`attempt`), where
an endpoint may point services/webhook_targets.py.

A delivery is one (endpoint, event): its payload is the event's public JSON exactly as the
change feed shows it (services/feed.event_json), stored once, so every attempt sends the same
bytes under the same `webhook-id`.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from background_tasks import Notice
from db_models import User, utcnow
from exceptions import InvalidTokenError, ResourceNotFoundError
from services.access import caller_clause, caller_params
from services.events import EVENTS, visible_to
from services.feed import event_json
from services.webhook_delivery import (
    DELIVERIES,
    FAILED,
    PENDING,
    SUCCEEDED,
    WEBHOOKS,
    attempt,
    message_id,
    new_client,
)
from services.webhook_targets import UnsafeTargetError, check_url
from settings import Settings
from webhook_models import (
    ALL_EVENTS,
    TEST_EVENT,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)

__all__ = [
    "FAILED", "PENDING", "SUCCEEDED", "DisabledWebhook", "UnsafeTargetError", "attempt",
    "create_webhook", "delete_webhook", "disable_failing", "disabled_notice", "due_deliveries",
    "get_webhook", "list_deliveries", "list_webhooks", "message_id", "new_client", "plan",
    "redeliver", "send_test", "update_webhook",
]  # fmt: skip

logger = logging.getLogger(__name__)

_USERS = User.metadata.tables[User.__tablename__]
SECRET_PREFIX = "whsec_"
# The delivery insert that skips a (webhook, event) already planned: one per dialect.
_INSERT_IGNORING = {
    name: dialect.insert(DELIVERIES).on_conflict_do_nothing(
        index_elements=["webhook_id", "event_id"]
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


class WebhookNotFoundError(ResourceNotFoundError):
    def __init__(self, webhook_id: int) -> None:  # another user's answers the same
        super().__init__(f"Webhook with ID {webhook_id} not found", webhook_id=webhook_id)


class DeliveryNotFoundError(ResourceNotFoundError):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"Delivery with ID {delivery_id} not found", delivery_id=delivery_id)


def new_secret() -> str:
    """A signing secret as the Standard Webhooks libraries take it: `whsec_` + base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _read(row: Any) -> WebhookRead:
    return WebhookRead.model_validate({**row._mapping, "events": row.events.split()})


async def _require_caller(session: AsyncSession, user_id: int) -> None:
    """401 unless the caller's row is there and the request's credential is not revoked
    (services.access.caller_clause): first, so that a revoked token learns nothing else."""
    live = select(_USERS.c.id).where(caller_clause(_USERS))
    if (await session.execute(live, caller_params(user_id))).first() is None:
        raise InvalidTokenError()


def _owned(webhook_id: int, user_id: int) -> ColumnElement[bool]:
    """The caller's webhooks only: another user's is not found, exactly like a missing one."""
    return (WEBHOOKS.c.id == webhook_id) & (WEBHOOKS.c.user_id == user_id)


# --- endpoints --------------------------------------------------------------------------------


async def create_webhook(
    session: AsyncSession, *, user_id: int, data: WebhookCreate, settings: Settings
) -> WebhookCreated:
    """Add an endpoint (its URL checked: UnsafeTargetError); its secret is in this answer only."""
    await _require_caller(session, user_id)
    await check_url(data.url, allow_private=settings.webhook_allow_private_targets)
    secret = new_secret()
    values = {
        "user_id": user_id, "url": data.url, "events": " ".join(data.events),
        "description": data.description, "secret": secret, "enabled": True,
        "created_at": utcnow(),
    }  # fmt: skip
    row = (await session.execute(insert(WEBHOOKS).values(values).returning(WEBHOOKS))).one()
    await session.commit()
    logger.info("webhook created user_id=%s webhook_id=%s", user_id, row.id)
    return WebhookCreated.model_validate({**_read(row).model_dump(), "secret": secret})


async def list_webhooks(session: AsyncSession, *, user_id: int) -> list[WebhookRead]:
    await _require_caller(session, user_id)
    rows = await session.execute(
        select(WEBHOOKS).where(WEBHOOKS.c.user_id == user_id).order_by(WEBHOOKS.c.id)
    )
    return [_read(row) for row in rows]


async def get_webhook(session: AsyncSession, *, user_id: int, webhook_id: int) -> WebhookRead:
    await _require_caller(session, user_id)
    row = (await session.execute(select(WEBHOOKS).where(_owned(webhook_id, user_id)))).first()
    if row is None:
        raise WebhookNotFoundError(webhook_id)
    return _read(row)


async def update_webhook(
    session: AsyncSession,
    *,
    user_id: int,
    webhook_id: int,
    data: WebhookUpdate,
    settings: Settings,
) -> WebhookRead:
    """Change what was sent; a new URL is checked as at creation. Enabling clears the marks of
    a disabled endpoint; disabling (by its owner) sets `disabled_at`."""
    await _require_caller(session, user_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if "url" in changes:
        await check_url(changes["url"], allow_private=settings.webhook_allow_private_targets)
    if "events" in changes:
        changes["events"] = " ".join(changes["events"])
    if changes.get("enabled") is True:
        changes.update(disabled_at=None, failing_since=None)
    elif changes.get("enabled") is False:
        changes["disabled_at"] = func.coalesce(WEBHOOKS.c.disabled_at, utcnow())
    if not changes:  # an UPDATE needs something to set: an empty PATCH reads the webhook
        statement: Any = select(WEBHOOKS).where(_owned(webhook_id, user_id))
    else:
        statement = update(WEBHOOKS).where(_owned(webhook_id, user_id)).values(changes)
        statement = statement.returning(WEBHOOKS)
    row = (await session.execute(statement)).first()
    if row is None:
        raise WebhookNotFoundError(webhook_id)
    await session.commit()
    logger.info("webhook updated user_id=%s webhook_id=%s", user_id, webhook_id)
    return _read(row)


async def delete_webhook(session: AsyncSession, *, user_id: int, webhook_id: int) -> None:
    """Remove an endpoint and its delivery log (ON DELETE CASCADE)."""
    await _require_caller(session, user_id)
    removed = await session.execute(delete(WEBHOOKS).where(_owned(webhook_id, user_id)))
    if removed.rowcount == 0:  # type: ignore[attr-defined]  # a CursorResult for a DELETE
        raise WebhookNotFoundError(webhook_id)
    await session.commit()
    logger.info("webhook deleted user_id=%s webhook_id=%s", user_id, webhook_id)


# --- deliveries seen by the endpoint's owner ------------------------------------------------------

_DELIVERY_FIELDS = [DELIVERIES.c[name] for name in DeliveryRead.model_fields]


async def _require_webhook(session: AsyncSession, user_id: int, webhook_id: int) -> None:
    await _require_caller(session, user_id)
    found = await session.execute(select(WEBHOOKS.c.id).where(_owned(webhook_id, user_id)))
    if found.first() is None:
        raise WebhookNotFoundError(webhook_id)


async def list_deliveries(
    session: AsyncSession, *, user_id: int, webhook_id: int, skip: int, limit: int
) -> tuple[list[DeliveryRead], int]:
    """One page of an endpoint's deliveries, newest first, and how many there are."""
    await _require_webhook(session, user_id, webhook_id)
    mine = DELIVERIES.c.webhook_id == webhook_id
    total = (await session.execute(select(func.count()).where(mine))).scalar_one()
    rows = await session.execute(
        select(*_DELIVERY_FIELDS).where(mine).order_by(DELIVERIES.c.id.desc())
        .offset(skip).limit(limit)
    )  # fmt: skip
    return [DeliveryRead.model_validate(row._mapping) for row in rows], total


async def redeliver(
    session: AsyncSession, *, user_id: int, webhook_id: int, delivery_id: int
) -> DeliveryRead:
    """Make a delivery pending and due now (the delivery job sends it; same payload, same
    `webhook-id`). It is retried within the retry horizon counted from its creation."""
    await _require_webhook(session, user_id, webhook_id)
    now = utcnow()
    row = (
        await session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.webhook_id == webhook_id)
            .values(status=PENDING, next_attempt_at=now, updated_at=now)
            .returning(*_DELIVERY_FIELDS)
        )
    ).first()
    if row is None:
        raise DeliveryNotFoundError(delivery_id)
    await session.commit()
    logger.info("webhook redelivery webhook_id=%s delivery_id=%s", webhook_id, delivery_id)
    return DeliveryRead.model_validate(row._mapping)


async def send_test(session: AsyncSession, *, user_id: int, webhook_id: int) -> DeliveryRead:
    """Plan a `webhook.test` delivery, due now: `data` names the endpoint."""
    await _require_webhook(session, user_id, webhook_id)
    now = utcnow()
    event = SimpleNamespace(
        id=None, type=TEST_EVENT, occurred_at=now, actor_id=user_id,
        data=f'{{"webhook_id":{webhook_id}}}',
    )  # fmt: skip
    values = {
        "webhook_id": webhook_id, "event_id": None, "event_type": TEST_EVENT,
        "payload": event_json(event).decode(), "status": PENDING, "attempts": 0,
        "next_attempt_at": now, "created_at": now, "updated_at": now,
    }  # fmt: skip
    statement = insert(DELIVERIES).values(values).returning(*_DELIVERY_FIELDS)
    row = (await session.execute(statement)).one()
    await session.commit()
    logger.info("webhook test planned webhook_id=%s delivery_id=%s", webhook_id, row.id)
    return DeliveryRead.model_validate(row._mapping)


# --- what the job engine runs -------------------------------------------------------------------

_WANTS = or_(
    WEBHOOKS.c.events == ALL_EVENTS,
    (literal(" ") + WEBHOOKS.c.events + " ").contains(literal(" ") + EVENTS.c.type + " "),
)
_PLAN = (
    select(
        WEBHOOKS.c.id.label("webhook_id"), EVENTS.c.id, EVENTS.c.type, EVENTS.c.occurred_at,
        EVENTS.c.actor_id, EVENTS.c.data,
    )
    .join_from(EVENTS, WEBHOOKS, WEBHOOKS.c.enabled & _WANTS)
    .where(EVENTS.c.id.in_(bindparam("event_ids", expanding=True)), visible_to(WEBHOOKS.c.user_id))
    .order_by(EVENTS.c.id, WEBHOOKS.c.id)
)  # fmt: skip


async def plan(connection: AsyncConnection, event_ids: Sequence[int]) -> list[int]:
    """On the caller's transaction, one pending delivery, due now, for each (enabled webhook,
    event) whose owner may see the event (services.events.visible_to) and whose filter takes
    its type. Idempotent: a (webhook, event) already planned is skipped (its unique index).
    Returns the ids of the deliveries created.

    Two statements, not one INSERT … SELECT: the payload is made by the feed's serialiser
    (C20, one serialiser per schema), which is Python; the insert is one multi-row statement."""
    if not event_ids:
        return []
    pairs = (await connection.execute(_PLAN, {"event_ids": list(event_ids)})).all()
    if not pairs:
        return []
    now = utcnow()
    rows = [
        {
            "webhook_id": pair.webhook_id, "event_id": pair.id, "event_type": pair.type,
            "payload": event_json(pair).decode(), "status": PENDING, "attempts": 0,
            "next_attempt_at": now, "created_at": now, "updated_at": now,
        }
        for pair in pairs
    ]  # fmt: skip
    statement = _INSERT_IGNORING[connection.dialect.name].returning(DELIVERIES.c.id)
    created = list((await connection.execute(statement, rows)).scalars())
    logger.info("webhook deliveries planned events=%s created=%s", len(event_ids), len(created))
    return created


async def due_deliveries(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> list[int]:
    """The pending deliveries of enabled webhooks due by `now`, the longest waiting first."""
    statement = (
        select(DELIVERIES.c.id)
        .join_from(DELIVERIES, WEBHOOKS, WEBHOOKS.c.id == DELIVERIES.c.webhook_id)
        .where(
            DELIVERIES.c.status == PENDING, DELIVERIES.c.next_attempt_at <= now, WEBHOOKS.c.enabled
        )
        .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
        .limit(limit)
    )
    async with sessions() as session:
        return list((await session.execute(statement)).scalars())


@dataclass(frozen=True, slots=True)
class DisabledWebhook:
    """An endpoint just disabled for failing, and whom to tell."""

    webhook_id: int
    url: str
    user_id: int
    email: str
    username: str


async def disable_failing(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> list[DisabledWebhook]:
    """Disable every enabled endpoint failing since before WEBHOOK_DISABLE_AFTER_DAYS ago;
    return each with its owner's address (for `disabled_notice`)."""
    cutoff = now - timedelta(days=settings.webhook_disable_after_days)
    statement = (
        update(WEBHOOKS)
        .where(WEBHOOKS.c.enabled, WEBHOOKS.c.failing_since < cutoff)
        .values(enabled=False, disabled_at=now)
        .returning(WEBHOOKS.c.id, WEBHOOKS.c.url, WEBHOOKS.c.user_id)
    )
    async with sessions() as session, session.begin():
        hooks = (await session.execute(statement)).all()
        owners = select(_USERS.c.id, _USERS.c.email, _USERS.c.username).where(
            _USERS.c.id.in_(list({hook.user_id for hook in hooks}))
        )
        people = {row.id: row for row in await session.execute(owners)} if hooks else {}
    for hook in hooks:
        logger.warning("webhook disabled after failing webhook_id=%s", hook.id)
    return [
        DisabledWebhook(
            hook.id, hook.url, hook.user_id, people[hook.user_id].email,
            people[hook.user_id].username,
        )
        for hook in hooks
    ]  # fmt: skip


def disabled_notice(disabled: DisabledWebhook, settings: Settings) -> Notice:
    """The email telling an owner their endpoint was disabled (the `notice_mail` job sends
    it). `task_id` 0: it is about no task."""
    days = f"{settings.webhook_disable_after_days:g}"
    return Notice(
        "webhook disabled", 0, disabled.email, "A webhook was disabled after failing",
        f"Hello {disabled.username},\n\nEvery delivery to your webhook #{disabled.webhook_id}"
        f" ({disabled.url}) has failed for {days} days, so it is now disabled and nothing more"
        " is sent to it.\n\nOnce the endpoint works again, enable it with PATCH"
        f" /webhooks/{disabled.webhook_id} {{\"enabled\": true}}; its failed deliveries can be"
        " sent again with POST /webhooks/{id}/deliveries/{delivery_id}/redeliver."
        "\n\n-- Task Manager\n",
    )  # fmt: skip
