"""Password reset and email verification: single-use tokens sent by email, stored as SHA-256.

A reset request does the same work whether or not the address has an account (one indexed
lookup); making and storing the token and sending the email are a job (`link_mail`, deferred
after the response), so neither the answer nor its time says which. No token is ever a job
argument: the job makes it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import quote

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth import hash_password, new_secret, secret_hash
from background_tasks import link_message
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
_TEXTS = {
    RESET: (
        "Reset your Task Manager password",
        "To choose a new password, open this link within 30 minutes:",
    ),
    VERIFY: (
        "Verify your Task Manager email address",
        "To confirm this address, open this link within 24 hours:",
    ),
}


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


async def request_reset(session: AsyncSession, *, email: str) -> int | None:
    """The id of the account with this address, if any; the caller defers its `link_mail` job
    after the response, so neither the answer nor its time says whether there is one."""
    found = await session.execute(select(User.id).where(func.lower(User.email) == email.lower()))
    user_id = found.scalar()
    await session.rollback()  # end the read
    if user_id is None:
        logger.info("password reset requested for no account")
    return user_id


async def link_message_for(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, user_id: int, purpose: str
) -> EmailMessage | None:
    """(In the `link_mail` job.) Store a new single-use token for the user's current address
    and build the email carrying its link; None if the account is gone (or, for verification,
    already verified)."""
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None or (purpose == VERIFY and user.email_verified):
            return None
        token = await _new_token(session, user=user, purpose=purpose)
        await session.commit()
    logger.info("%s link issued user_id=%s", purpose, user_id)
    subject, text = _TEXTS[purpose]
    return link_message(
        settings, to=user.email, name=user.username, subject=subject, text=text,
        link=link(settings, purpose, token),
    )  # fmt: skip


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


def check_verifiable(user: User) -> None:
    """409 if the address is verified already (else the route defers a `link_mail` job)."""
    if user.email_verified:
        raise AlreadyVerifiedError()


async def verify_email(session: AsyncSession, *, token: str) -> None:
    """Mark the address the token was sent to as verified."""
    user = await _spend(session, token=token, purpose=VERIFY)
    user.email_verified = True
    await session.commit()
    logger.info("email verified user_id=%s", user.id)
