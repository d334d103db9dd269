"""Accounts: registration, login, the profile, password changes and account deletion."""

from __future__ import annotations

import logging

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from account_models import ProfileUpdate
from auth import Principal, hash_password, verify_password
from db_models import Task, TaskFile, User
from exceptions import (
    DuplicateUserError,
    InvalidCredentialsError,
    InvalidTokenError,
    WrongPasswordError,
)
from models import Token, UserCreate
from services import sessions
from settings import HashCost, Settings

logger = logging.getLogger(__name__)


def _duplicate_field(exc: IntegrityError) -> str:
    # The first line names the constraint or column: SQLite "users.email" or "index
    # 'uq_users_email_lower'", PostgreSQL 'constraint "uq_users_email_lower"'. Only the first:
    # PostgreSQL's DETAIL line quotes the value, which may contain "email".
    first = str(exc.orig).lower().split("detail:")[0].splitlines()[0]
    return "email" if "email" in first else "username"


async def _commit_unique(session: AsyncSession) -> None:
    """Commit; a taken name or address (any case: the lower() indexes decide) is a 409."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise DuplicateUserError(_duplicate_field(exc)) from None


async def register_user(session: AsyncSession, *, data: UserCreate, cost: HashCost) -> User:
    """Create a user. The unique indexes, not a prior lookup, decide duplicates."""
    user = User(
        username=data.username,
        email=data.email.lower(),
        hashed_password=await hash_password(data.password, cost=cost),
    )
    session.add(user)
    await _commit_unique(session)
    logger.info("user registered user_id=%s", user.id)
    return user


async def _checked(session: AsyncSession, user: User | None, password: str, cost: HashCost) -> bool:
    """Whether the password is the user's (timing-safe for no user); an older hash is replaced
    by an argon2id one (flushed with the caller's unit of work)."""
    valid, new_hash = await verify_password(
        password, user.hashed_password if user else None, cost=cost
    )
    if valid and user is not None and new_hash is not None:
        user.hashed_password = new_hash
        logger.info("password hash upgraded user_id=%s", user.id)
    return valid and user is not None


async def login(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    user_agent: str | None,
    settings: Settings,
    secret: str,
) -> Token:
    """Check credentials (the name in any case) and start a session; unknown users cost the
    same time as bad passwords."""
    user = await session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if not await _checked(session, user, password, settings.hash_cost):
        logger.info("login failed")
        raise InvalidCredentialsError()
    assert user is not None
    token = await sessions.start_session(
        session, user_id=user.id, user_agent=user_agent, settings=settings, secret=secret
    )
    await session.commit()
    return token


async def update_profile(session: AsyncSession, *, user: User, data: ProfileUpdate) -> User:
    """Change the email; a changed address is unverified again (409 if taken)."""
    email = data.email.lower()
    if email != user.email:
        user.email = email
        user.email_verified = False
        await _commit_unique(session)
        logger.info("email changed user_id=%s", user.id)
    return user


async def change_password(
    session: AsyncSession,
    *,
    user: User,
    principal: Principal,
    current: str,
    new: str,
    settings: Settings,
) -> None:
    """Set a new password (400 if `current` is wrong) and end every other session."""
    if not await _checked(session, user, current, settings.hash_cost):
        raise WrongPasswordError()
    user.hashed_password = await hash_password(new, cost=settings.hash_cost)
    await sessions.end_sessions(
        session, user_id=user.id, settings=settings, keep=principal.credential_id
    )
    await session.commit()
    logger.info("password changed user_id=%s", user.id)


async def delete_account(
    session: AsyncSession,
    *,
    user: User,
    password: str,
    cost: HashCost,
) -> list[str]:
    """Delete the account and everything it owns (rows by ON DELETE CASCADE); returns the blob
    keys of its files, for the caller's `delete_blobs` job (what is missed: reconcile-storage)."""
    if not await _checked(session, user, password, cost):
        raise WrongPasswordError()
    keys = list(
        await session.scalars(
            select(TaskFile.storage_key)
            .join(Task, Task.id == TaskFile.task_id)
            .where(Task.user_id == user.id)
        )
    )
    deleted = await session.execute(delete(User).where(User.id == user.id))
    if not deleted.rowcount:  # type: ignore[attr-defined]  # a DELETE's CursorResult
        raise InvalidTokenError()
    await session.commit()
    logger.info("account deleted user_id=%s files=%s", user.id, len(keys))
    return keys
