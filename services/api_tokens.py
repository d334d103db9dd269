"""Personal API tokens: created (shown once), listed, revoked, and looked up for the bearer check.

A token is `tm_pat_` + 256 random bits, kept only as its SHA-256 in a `credentials` row of kind
"token", with its name, scopes and expiry. Like a session it is revoked by services.sessions.revoke
(checked by services.access.caller_clause), at once, on every instance. What it
may do is decided by its scopes in services.access (`require_scope`), nowhere else.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from account_models import ApiTokenCreate, ApiTokenCreated, ApiTokenRead, TokenScope
from auth import PAT_PREFIX, Principal, TokenFacts, new_secret
from db_models import Credential, utcnow
from exceptions import CredentialNotFoundError
from services import sessions
from settings import Settings

logger = logging.getLogger(__name__)

TOKEN = "token"
_CREDENTIALS = Credential.metadata.tables[Credential.__tablename__]
_LOOKUP = select(
    _CREDENTIALS.c.id, _CREDENTIALS.c.user_id, _CREDENTIALS.c.scopes, _CREDENTIALS.c.expires_at
).where(_CREDENTIALS.c.secret_hash == bindparam("hashed"), _CREDENTIALS.c.kind == TOKEN)


async def lookup(engine: AsyncEngine, hashed: str) -> TokenFacts | None:
    """The token with this SHA-256, if one was issued (auth.TokenLookup)."""
    async with engine.connect() as connection:
        row = (await connection.execute(_LOOKUP, {"hashed": hashed})).first()
    if row is None:
        return None
    scopes = frozenset((row.scopes or "").split())
    expires = row.expires_at.timestamp() if row.expires_at is not None else math.inf
    return TokenFacts(Principal(row.user_id, row.id, scopes), expires)


def _read(row: object) -> ApiTokenRead:
    return ApiTokenRead.model_validate(
        {**row._mapping, "scopes": (row.scopes or "").split()}  # type: ignore[attr-defined]
    )


async def create_token(
    session: AsyncSession, *, user_id: int, data: ApiTokenCreate
) -> ApiTokenCreated:
    """Issue a token; its secret is in this answer only."""
    token, hashed = new_secret(PAT_PREFIX)
    now = utcnow()
    expires = now + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    scopes = list(dict.fromkeys(data.scopes))
    created = await session.execute(
        insert(_CREDENTIALS)
        .values(
            user_id=user_id, kind=TOKEN, name=data.name, scopes=" ".join(scopes),
            secret_hash=hashed, created_at=now, expires_at=expires,
        )
        .returning(_CREDENTIALS.c.id)
    )  # fmt: skip
    token_id = created.scalar_one()
    await session.commit()
    logger.info("api token created user_id=%s token_id=%s", user_id, token_id)
    return ApiTokenCreated(
        id=token_id, name=data.name, scopes=[TokenScope(s) for s in scopes], token=token,
        created_at=now, expires_at=expires,
    )  # fmt: skip


async def list_tokens(session: AsyncSession, *, user_id: int) -> Sequence[ApiTokenRead]:
    rows = await session.execute(
        select(_CREDENTIALS)
        .where(_CREDENTIALS.c.user_id == user_id, _CREDENTIALS.c.kind == TOKEN)
        .order_by(_CREDENTIALS.c.id)
    )
    return [_read(row) for row in rows]


async def revoke_token(
    session: AsyncSession, *, user_id: int, token_id: int, settings: Settings
) -> None:
    """Revoke one of the user's tokens: it stops working at once (404 if not theirs)."""
    ended = delete(_CREDENTIALS).where(
        _CREDENTIALS.c.id == token_id,
        _CREDENTIALS.c.user_id == user_id,
        _CREDENTIALS.c.kind == TOKEN,
    )
    if not await sessions.revoke(session, ended, settings=settings):
        raise CredentialNotFoundError("token", token_id)
    await session.commit()
    logger.info("api token revoked user_id=%s token_id=%s", user_id, token_id)
