"""Idempotency keys in the database: reserve, store the answer, or release.

Each function is one unit of work (one commit). Keys are per user and kept for RETENTION; a
reservation whose request died is taken over once its lease has passed.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db_models import IdempotencyKey, User, utcnow
from exceptions import InvalidTokenError
from services.access import caller_clause, caller_params

RETENTION = timedelta(hours=24)


async def reserve(
    session: AsyncSession, *, user_id: int, key: str, fingerprint: str, lease: timedelta
) -> IdempotencyKey | None:
    """Reserve the key; return the existing record instead when someone holds it."""
    now = utcnow()
    # A record past its retention, or a reservation whose request died, no longer counts.
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            (IdempotencyKey.created_at < now - RETENTION)
            | (IdempotencyKey.status_code.is_(None) & (IdempotencyKey.locked_until < now)),
        )
    )
    session.add(
        IdempotencyKey(
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            created_at=now,
            locked_until=now + lease,
        )
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
            )
        )
        # A replay answers before the route's own statements run: check here that the
        # session (or personal token) that sends it has not been revoked meanwhile.
        live = select(User.id).where(caller_clause(User.__table__))
        if existing is not None and await session.scalar(live, caller_params(user_id)) is None:
            raise InvalidTokenError() from None
        return existing
    return None


async def store(
    session: AsyncSession,
    *,
    user_id: int,
    key: str,
    status_code: int,
    content_type: str,
    body: bytes,
) -> None:
    """Keep the final answer, for retries to replay."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
        .values(status_code=status_code, content_type=content_type, response_body=body)
    )
    await session.commit()


async def release(session: AsyncSession, *, user_id: int, key: str) -> None:
    """Free the key (the request failed or never finished), so a retry runs at once."""
    await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    )
    await session.commit()
