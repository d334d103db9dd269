"""Password reset and email verification: single-use tokens sent by email, stored as SHA-256.

A reset request does the same work whether or not the address has an account (one indexed
lookup, a token made and hashed); storing the token and sending the email happen after the
response, so neither the answer nor its time says which.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import quote

from fastapi import BackgroundTasks
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import hash_password, new_secret, secret_hash
from background_tasks import send_link_email
from db_models import OneTimeToken, User, utcnow
from exceptions import AlreadyVerifiedError, InvalidAccountTokenError
from services import sessions
from settings import Settings

logger = logging.getLogger(__name__)

RESET = "reset"
VERIFY = "verify"
LIFETIMES = {RESET: timedelta(minutes=30), VERIFY: timedelta(hours=24)}
_PATHS = {RESET: "/auth/password-reset", VERIFY: "/notifications/verify"}
_TOKENS = OneTimeToken.metadata.tables[OneTimeToken.__tablename__]


def link(settings: Settings, purpose: str, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}{_PATHS[purpose]}?token={quote(token)}"


async def _new_token(session: AsyncSession, *, user: User, purpose: str) -> str:
    token, hashed = new_secret()
    await session.execute(
        insert(_TOKENS).values(
            token_hash=hashed, user_id=user.id, purpose=purpose, email=user.email,
            expires_at=utcnow() + LIFETIMES[purpose],
        )
    )  # fmt: skip
    return token


async def request_reset(
    session: AsyncSession,
    background: BackgroundTasks,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    email: str,
) -> None:
    """Look the address up and, if it has an account, store and email a reset token after the
    response. The request does the same work either way (one lookup, a token made and hashed):
    the answer and its timing do not say whether the account exists."""
    token, hashed = new_secret()
    found = await session.execute(
        select(User.id, User.email, User.username).where(func.lower(User.email) == email.lower())
    )
    user = found.first()
    await session.rollback()  # end the read: the write happens after the response
    if user is None:
        logger.info("password reset requested for no account")
        return
    background.add_task(
        _send_reset, sessionmaker, settings, user_id=user.id, to=user.email,
        name=user.username, token=token, hashed=hashed,
    )  # fmt: skip


async def _send_reset(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    user_id: int,
    to: str,
    name: str,
    token: str,
    hashed: str,
) -> None:
    """(After the response.) Store the reset token and email its link; never raises."""
    try:
        async with sessionmaker() as session:
            await session.execute(
                insert(_TOKENS).values(
                    token_hash=hashed, user_id=user_id, purpose=RESET, email=to,
                    expires_at=utcnow() + LIFETIMES[RESET],
                )
            )  # fmt: skip
            await session.commit()
    except Exception as exc:
        logger.error("password reset not stored user_id=%s error=%s", user_id, type(exc).__name__)
        return
    logger.info("password reset requested user_id=%s", user_id)
    await send_link_email(
        settings,
        to=to,
        name=name,
        subject="Reset your Task Manager password",
        text="To choose a new password, open this link within 30 minutes:",
        link=link(settings, RESET, token),
    )


async def _spend(session: AsyncSession, *, token: str, purpose: str) -> User:
    """Mark the token used and return its user (400 if unknown, used, expired, or for an
    address the user no longer has)."""
    now = utcnow()
    spent = await session.execute(
        update(_TOKENS)
        .where(
            _TOKENS.c.token_hash == secret_hash(token),
            _TOKENS.c.purpose == purpose,
            _TOKENS.c.used_at.is_(None),
        )
        .values(used_at=now)
        .returning(_TOKENS.c.user_id, _TOKENS.c.email, _TOKENS.c.expires_at)
    )
    row = spent.first()
    user = await session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or row.expires_at <= now or row.email != user.email:
        await session.rollback()
        raise InvalidAccountTokenError()
    return user


async def reset_password(
    session: AsyncSession, *, token: str, new_password: str, settings: Settings
) -> None:
    """Set the password a reset token allows and end every session of the user."""
    user = await _spend(session, token=token, purpose=RESET)
    user.hashed_password = await hash_password(new_password, cost=settings.hash_cost)
    await sessions.end_sessions(session, user_id=user.id, settings=settings)
    await session.commit()
    logger.info("password reset user_id=%s", user.id)


async def send_verification(
    session: AsyncSession, background: BackgroundTasks, settings: Settings, *, user: User
) -> None:
    """Email a verification link to the user's address (409 if already verified)."""
    if user.email_verified:
        raise AlreadyVerifiedError()
    token = await _new_token(session, user=user, purpose=VERIFY)
    await session.commit()
    background.add_task(
        send_link_email,
        settings,
        to=user.email,
        name=user.username,
        subject="Verify your Task Manager email address",
        text="To confirm this address, open this link within 24 hours:",
        link=link(settings, VERIFY, token),
    )


async def verify_email(session: AsyncSession, *, token: str) -> None:
    """Mark the address the token was sent to as verified."""
    user = await _spend(session, token=token, purpose=VERIFY)
    user.email_verified = True
    await session.commit()
    logger.info("email verified user_id=%s", user.id)
