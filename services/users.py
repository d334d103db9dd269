"""Accounts: registration and authentication."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth import create_access_token, hash_password, verify_password
from db_models import User
from exceptions import DuplicateUserError, InvalidCredentialsError
from models import Token, UserCreate
from settings import Settings

logger = logging.getLogger(__name__)


def _duplicate_field(exc: IntegrityError) -> str:
    # Both SQLite ("users.email") and PostgreSQL ("uq_users_email") name the column.
    return "email" if "email" in str(exc.orig).lower() else "username"


async def register_user(session: AsyncSession, *, data: UserCreate, bcrypt_rounds: int) -> User:
    """Create a user. The unique constraints, not a prior lookup, decide duplicates."""
    user = User(
        username=data.username,
        email=data.email.lower(),
        hashed_password=await hash_password(data.password, rounds=bcrypt_rounds),
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise DuplicateUserError(_duplicate_field(exc)) from None
    logger.info("user registered user_id=%s", user.id)
    return user


async def login(
    session: AsyncSession, *, username: str, password: str, settings: Settings, secret: str
) -> Token:
    """Check credentials and issue a token; unknown users cost the same time as bad passwords."""
    user = await session.scalar(select(User).where(User.username == username))
    hashed = user.hashed_password if user is not None else None
    valid = await verify_password(password, hashed, rounds=settings.bcrypt_rounds)
    if user is None or not valid:
        logger.info("login failed")
        raise InvalidCredentialsError()
    minutes = settings.access_token_expire_minutes
    token = create_access_token(user.id, secret=secret, expires_minutes=minutes)
    return Token(access_token=token, expires_in=minutes * 60)
