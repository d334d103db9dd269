"""Login sessions: start one, refresh it (rotating its refresh token), list and end them.

A session is a `credentials` row of kind "session"; its access tokens name it (`sid`) and stop
working the moment it is revoked (`revoke`: the row goes and its id is listed on the user's row,
which services.access.caller_clause tests in every statement). Refresh tokens are opaque,
single use, stored as SHA-256: presenting a spent one again ends the whole session, since one
of the two parties holding it is not its owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Delete, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from account_models import SessionRead
from auth import PAT_RECHECK_SECONDS, Principal, create_access_token, new_secret, secret_hash
from db_models import Credential, RefreshToken, User, UTCDateTime, utcnow
from exceptions import CredentialNotFoundError, InvalidTokenError
from models import Token
from settings import Settings

logger = logging.getLogger(__name__)

SESSION = "session"
_CREDENTIALS = Credential.metadata.tables[Credential.__tablename__]
_REFRESH = RefreshToken.metadata.tables[RefreshToken.__tablename__]
_USERS = User.metadata.tables[User.__tablename__]
# Seconds a revoked id stays listed past the longest an access token (or a process's cached
# personal-token lookup, auth.PAT_RECHECK_SECONDS) issued before the revocation can live:
# clock skew between instances.
_REVOCATION_MARGIN = 60
# Spend a refresh token: one statement, so of two racing uses exactly one gets the row.
_SPEND = (
    update(_REFRESH)
    .where(_REFRESH.c.spent_at.is_(None))
    .values(spent_at=bindparam("now", type_=UTCDateTime()))
    .returning(_REFRESH.c.credential_id, _REFRESH.c.expires_at)
)


_TOUCH = (
    update(_CREDENTIALS)
    .where(_CREDENTIALS.c.id == bindparam("credential"))
    .values(last_used_at=bindparam("now", type_=UTCDateTime()))
)
# last_used_at (of a session or a personal token) is written at most once a minute per
# credential and process: a busy client costs one small UPDATE a minute, not one per request.
TOUCH_INTERVAL = 60.0
_touched: dict[int, float] = {}
_TOUCHED_MAX = 4096


def touch_due(credential_id: int) -> bool:
    """Whether this process last wrote the credential's last_used_at over a minute ago."""
    last = _touched.get(credential_id)
    return last is None or time.monotonic() - last >= TOUCH_INTERVAL


def _touched_now(credential_id: int) -> None:
    if len(_touched) >= _TOUCHED_MAX:
        _touched.clear()
    _touched[credential_id] = time.monotonic()


async def touch(engine: AsyncEngine, principal: Principal) -> None:
    """Record that a credential was used (callers ask `touch_due` first)."""
    _touched_now(principal.credential_id)
    async with engine.begin() as connection:
        await connection.execute(_TOUCH, {"credential": principal.credential_id, "now": utcnow()})


async def _issue(
    session: AsyncSession, *, user_id: int, session_id: int, settings: Settings, secret: str
) -> Token:
    """A new refresh token for the session (added to the unit of work) and an access token."""
    refresh, hashed = new_secret()
    expires = utcnow() + timedelta(days=settings.refresh_token_expire_days)
    await session.execute(
        insert(_REFRESH).values(token_hash=hashed, credential_id=session_id, expires_at=expires)
    )
    minutes = settings.access_token_expire_minutes
    access = create_access_token(
        user_id, session_id=session_id, secret=secret, expires_minutes=minutes
    )
    return Token(access_token=access, expires_in=minutes * 60, refresh_token=refresh)


async def start_session(
    session: AsyncSession,
    *,
    user_id: int,
    user_agent: str | None,
    settings: Settings,
    secret: str,
) -> Token:
    """Start a session for the user (flushed, not committed: the login's unit of work)."""
    now = utcnow()
    agent = user_agent[:200] if user_agent else None
    created = await session.execute(
        insert(_CREDENTIALS)
        .values(user_id=user_id, kind=SESSION, created_at=now, last_used_at=now, user_agent=agent)
        .returning(_CREDENTIALS.c.id)
    )
    session_id = created.scalar_one()
    _touched_now(session_id)  # last_used_at is set by this INSERT
    logger.info("session started user_id=%s session_id=%s", user_id, session_id)
    return await _issue(
        session, user_id=user_id, session_id=session_id, settings=settings, secret=secret
    )


async def refresh(
    session: AsyncSession, *, refresh_token: str, settings: Settings, secret: str
) -> Token:
    """Spend a refresh token for a new pair. Unknown or expired: 401. Spent before: the
    session it belonged to ends (theft detection), then 401."""
    hashed = secret_hash(refresh_token)
    spent = await session.execute(_SPEND.where(_REFRESH.c.token_hash == hashed), {"now": utcnow()})
    row = spent.first()
    if row is None:
        owner = await session.scalar(
            select(_REFRESH.c.credential_id).where(_REFRESH.c.token_hash == hashed)
        )
        if owner is not None:
            ended = delete(_CREDENTIALS).where(_CREDENTIALS.c.id == owner)
            await revoke(session, ended, settings=settings)
            await session.commit()
            logger.warning("refresh token reused: session ended session_id=%s", owner)
            raise InvalidTokenError("Refresh token already used; the session has ended")
        raise InvalidTokenError("Invalid refresh token")
    if row.expires_at <= utcnow():
        await session.rollback()
        raise InvalidTokenError("Refresh token has expired")
    user_id = await session.scalar(
        update(_CREDENTIALS)
        .where(_CREDENTIALS.c.id == row.credential_id)
        .values(last_used_at=utcnow())
        .returning(_CREDENTIALS.c.user_id)
    )
    if user_id is None:  # the session ended meanwhile
        await session.rollback()
        raise InvalidTokenError("Invalid refresh token")
    _touched_now(row.credential_id)
    token = await _issue(
        session, user_id=user_id, session_id=row.credential_id, settings=settings, secret=secret
    )
    await session.commit()
    return token


async def revoke(session: AsyncSession, ended: Delete, *, settings: Settings) -> list[int]:
    """Delete credentials (`ended`, a DELETE of `credentials` rows) and list their ids on their
    users' rows until every access token issued for them has expired (flushed, not
    committed). Returns the ids. The one way a session or a personal token is revoked."""
    rows = (await session.execute(ended.returning(_CREDENTIALS.c.id, _CREDENTIALS.c.user_id))).all()
    now = int(time.time())
    lifetime = max(settings.access_token_expire_minutes * 60, PAT_RECHECK_SECONDS)
    forget_at = now + lifetime + _REVOCATION_MARGIN
    for user_id in sorted({row.user_id for row in rows}):
        listed = await session.scalar(
            select(_USERS.c.revoked_credentials).where(_USERS.c.id == user_id).with_for_update()
        )
        if listed is None:  # the user is gone: so are their tokens
            continue
        kept = [entry for entry in listed.split(",") if entry and int(entry.split("@")[1]) > now]
        kept += [f"{row.id}@{forget_at}" for row in rows if row.user_id == user_id]
        value = f",{','.join(kept)}," if kept else ""
        await session.execute(
            update(_USERS).where(_USERS.c.id == user_id).values(revoked_credentials=value)
        )
    return [row.id for row in rows]


async def end_sessions(
    session: AsyncSession,
    *,
    user_id: int,
    settings: Settings,
    keep: int | None = None,
    only: int | None = None,
) -> int:
    """End the user's sessions: all, all but `keep`, or only `only` (flushed, not committed).
    Returns how many ended. Their refresh tokens go with them (ON DELETE CASCADE)."""
    statement = delete(_CREDENTIALS).where(
        _CREDENTIALS.c.user_id == user_id, _CREDENTIALS.c.kind == SESSION
    )
    if keep is not None:
        statement = statement.where(_CREDENTIALS.c.id != keep)
    if only is not None:
        statement = statement.where(_CREDENTIALS.c.id == only)
    ended = len(await revoke(session, statement, settings=settings))
    logger.info("sessions ended user_id=%s count=%s", user_id, ended)
    return ended


async def logout(session: AsyncSession, *, principal: Principal, settings: Settings) -> None:
    """End the session the request was made in."""
    await end_sessions(
        session, user_id=principal.user_id, settings=settings, only=principal.credential_id
    )
    await session.commit()


async def end_session(
    session: AsyncSession, *, principal: Principal, session_id: int, settings: Settings
) -> None:
    """End one of the caller's sessions (404 if it is not one)."""
    if not await end_sessions(
        session, user_id=principal.user_id, settings=settings, only=session_id
    ):
        raise CredentialNotFoundError("session", session_id)
    await session.commit()


async def list_sessions(session: AsyncSession, *, principal: Principal) -> Sequence[SessionRead]:
    rows = await session.execute(
        select(_CREDENTIALS)
        .where(_CREDENTIALS.c.user_id == principal.user_id, _CREDENTIALS.c.kind == SESSION)
        .order_by(_CREDENTIALS.c.id)
    )
    return [
        SessionRead(
            id=row.id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            user_agent=row.user_agent,
            current=row.id == principal.credential_id,
        )
        for row in rows
    ]
