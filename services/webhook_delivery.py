"""One delivery attempt: POST a delivery's stored payload, signed per the Standard Webhooks
specification, to the checked address of its endpoint, and record the outcome.

No database connection is held during the HTTP request: the delivery is claimed (leased) in
one short transaction, sent, and its outcome written in another. The lease (next_attempt_at
moved past the attempt's timeout) keeps a second worker from sending it at the same time; if
this worker dies mid-attempt, the delivery is due again when the lease ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
from sqlalchemy import Executable, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook as Signer

from db_models import utcnow
from event_tables import Webhook, WebhookDelivery
from services.webhook_targets import UnsafeTargetError, check_target
from settings import Settings

logger = logging.getLogger(__name__)

WEBHOOKS = Webhook.metadata.tables[Webhook.__tablename__]
DELIVERIES = WebhookDelivery.metadata.tables[WebhookDelivery.__tablename__]
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
LEASE_MARGIN = timedelta(seconds=30)
USER_AGENT = "TaskManager-Webhooks/1"
_ERROR_LENGTH = 200


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery_id: int
    webhook_id: int
    url: str
    secret: str
    payload: str
    created_at: datetime


def new_client(settings: Settings) -> httpx.AsyncClient:
    """A client fit for deliveries: no redirects followed, no proxy from the environment (a
    proxy would connect to the name, not the checked address), the timeout per operation."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
    )


def message_id(delivery_id: int) -> str:
    """The `webhook-id`: one delivery is one (endpoint, event), so every attempt and every
    redelivery of it carries the same id (receivers deduplicate on it)."""
    return f"msg_{delivery_id}"


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failure: the schedule, then doubling its last."""
    schedule = settings.webhook_retry_schedule
    if attempts <= len(schedule):
        return float(schedule[attempts - 1])
    return float(schedule[-1] * 2 ** (attempts - len(schedule)))


async def _claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, delivery_id: int
) -> _Claimed | None:
    """Lease a due pending delivery of an enabled webhook (None: nothing to do)."""
    now = utcnow()
    lease = now + timedelta(seconds=settings.webhook_timeout_seconds) + LEASE_MARGIN
    enabled = exists().where(WEBHOOKS.c.id == DELIVERIES.c.webhook_id, WEBHOOKS.c.enabled)
    claim = (
        update(DELIVERIES)
        .where(
            DELIVERIES.c.id == delivery_id,
            DELIVERIES.c.status == PENDING,
            DELIVERIES.c.next_attempt_at <= now,
            enabled,
        )
        .values(next_attempt_at=lease)
        .returning(DELIVERIES.c.webhook_id, DELIVERIES.c.payload, DELIVERIES.c.created_at)
    )
    async with sessions() as session, session.begin():
        row = (await session.execute(claim)).first()
        if row is None:
            return None
        hook = (
            await session.execute(
                select(WEBHOOKS.c.url, WEBHOOKS.c.secret).where(WEBHOOKS.c.id == row.webhook_id)
            )
        ).one()
    return _Claimed(delivery_id, row.webhook_id, hook.url, hook.secret, row.payload, row.created_at)


def _signed_headers(claimed: _Claimed, host: str) -> dict[str, str]:
    msg_id, sent_at = message_id(claimed.delivery_id), utcnow()
    return {
        "Host": host,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # No connection is reused: one kept for host A (pinned to its address) must never carry
        # host B's request, and a new one is checked and pinned every time.
        "Connection": "close",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Signer(claimed.secret).sign(msg_id, sent_at, claimed.payload),
    }


async def _post(
    client: httpx.AsyncClient, settings: Settings, claimed: _Claimed
) -> tuple[int | None, str | None]:
    """Send once: (status code, None) on an answer, (None, why) when there was none."""
    target = await check_target(claimed.url, allow_private=settings.webhook_allow_private_targets)
    pinned = target.url.copy_with(host=str(target.address))
    host = target.url.netloc.decode("ascii")
    extensions: dict[str, Any] = {}
    if target.url.scheme == "https":  # TLS to the address, but SNI and the certificate: the name
        extensions["sni_hostname"] = target.url.host
    request = client.build_request(
        "POST",
        pinned,
        content=claimed.payload.encode(),
        headers=_signed_headers(claimed, host),
        extensions=extensions,
        timeout=settings.webhook_timeout_seconds,
    )
    # The body is never read: the status is the answer, a large or slow body costs nothing.
    response = await client.send(request, stream=True, follow_redirects=False)
    await response.aclose()
    return response.status_code, None


async def _send(settings: Settings, claimed: _Claimed, client: httpx.AsyncClient | None) -> Any:
    """The attempt as a whole bounded by WEBHOOK_TIMEOUT_SECONDS (a receiver trickling bytes
    resets httpx's per-read timeout, not this one)."""
    try:
        with anyio.fail_after(settings.webhook_timeout_seconds):
            if client is not None:
                return await _post(client, settings, claimed)
            async with new_client(settings) as own:
                return await _post(own, settings, claimed)
    except TimeoutError:
        return None, f"no answer within {settings.webhook_timeout_seconds:g} s"
    except UnsafeTargetError as exc:
        return None, f"refused at delivery: {exc.reason}"[:_ERROR_LENGTH]
    except httpx.HTTPError as exc:
        # The exception's type only: its text may quote the URL, which can hold a token.
        return None, f"request failed: {type(exc).__name__}"


def _outcome(
    settings: Settings, claimed: _Claimed, attempts: int, code: int | None, now: datetime
) -> tuple[str, datetime | None, float | None]:
    """(status, next attempt, delay): succeeded, pending again after a delay, or failed."""
    if code is not None and 200 <= code < 300:
        return SUCCEEDED, None, None
    delay = retry_delay(settings, attempts)
    horizon = claimed.created_at + timedelta(seconds=settings.webhook_retry_horizon_seconds)
    retry_at = now + timedelta(seconds=delay)
    if retry_at > horizon:
        return FAILED, None, None
    return PENDING, retry_at, delay


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    claimed: _Claimed,
    code: int | None,
    error: str | None,
) -> float | None:
    """Write the attempt's outcome on the delivery and the endpoint; return the retry delay."""
    now = utcnow()
    if error is None and code is not None and not 200 <= code < 300:
        error = f"answered {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    async with sessions() as session, session.begin():
        attempts = (
            await session.execute(
                select(DELIVERIES.c.attempts).where(DELIVERIES.c.id == claimed.delivery_id)
            )
        ).scalar_one_or_none()
        if attempts is None:  # deleted meanwhile (with its webhook)
            return None
        status, retry_at, delay = _outcome(settings, claimed, attempts + 1, code, now)
        await session.execute(
            update(DELIVERIES)
            .where(DELIVERIES.c.id == claimed.delivery_id)
            .values(
                attempts=DELIVERIES.c.attempts + 1, last_status_code=code, last_error=error,
                status=status, next_attempt_at=retry_at, updated_at=now,
            )
        )  # fmt: skip
        await session.execute(_endpoint_health(claimed.webhook_id, status == SUCCEEDED, now))
    logger.info(
        "webhook delivery attempted delivery_id=%s webhook_id=%s status=%s code=%s",
        claimed.delivery_id, claimed.webhook_id, status, code,
    )  # fmt: skip
    return delay


def _endpoint_health(webhook_id: int, succeeded: bool, now: datetime) -> Executable:
    """A success clears the endpoint's `failing_since`; a failure starts it if unset."""
    hook = update(WEBHOOKS).where(WEBHOOKS.c.id == webhook_id)
    if succeeded:
        return hook.values(failing_since=None)
    return hook.where(WEBHOOKS.c.failing_since.is_(None)).values(failing_since=now)


async def attempt(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    delivery_id: int,
    *,
    client: httpx.AsyncClient | None = None,
) -> float | None:
    """Make one attempt of a due pending delivery of an enabled webhook and record it. Returns
    the seconds until the next attempt when it failed and will be retried; None when it
    succeeded, failed for good, or there was nothing to do (gone, not pending or not due,
    webhook disabled). `client`: one from `new_client` to share between attempts."""
    claimed = await _claim(sessions, settings, delivery_id)
    if claimed is None:
        return None
    code, error = await _send(settings, claimed, client)
    return await _record(sessions, settings, claimed, code, error)
