"""Password hashing (bcrypt, off the event loop) and JWT access tokens (PyJWT, HS256 only)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import bcrypt
import jwt
from anyio import to_thread
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection

from exceptions import InvalidTokenError
from models import MAX_BCRYPT_BYTES

ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["exp", "sub", "iat"]
# The request-state key under which bearer_user keeps its outcome.
_PRINCIPAL = "principal"


def _hash_sync(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> bytes:
    return _hash_sync("dummy-password-for-timing", rounds).encode()


def _verify_sync(password: str, hashed: bytes) -> bool:
    candidate = password.encode()
    if len(candidate) > MAX_BCRYPT_BYTES:
        # bcrypt 5 refuses such input; still spend the same time before saying no.
        bcrypt.checkpw(candidate[:MAX_BCRYPT_BYTES], hashed)
        return False
    return bcrypt.checkpw(candidate, hashed)


async def hash_password(password: str, *, rounds: int) -> str:
    return await to_thread.run_sync(_hash_sync, password, rounds)


async def verify_password(password: str, hashed: str | None, *, rounds: int) -> bool:
    """Check a password; with no hash (unknown user) check a dummy so timing reveals nothing."""
    if hashed is None:
        await to_thread.run_sync(_verify_sync, password, _dummy_hash(rounds))
        return False
    return await to_thread.run_sync(_verify_sync, password, hashed.encode())


def create_access_token(user_id: int, *, secret: str, expires_minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=expires_minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens already verified, with the user id and expiry they carry. A client sends the same token
# with every request, and checking its HMAC and parsing its claims was 14-15 % of the CPU of
# `GET /tasks/{id}` and of a stats hit (py-spy, docs/PERFORMANCE.md). A shortcut inside the one
# place that verifies a token: keyed by the secret too, bounded (oldest entries go first), and an
# entry is never used past the token's own expiry. (Revoking a token before its expiry, when
# sessions come, is checked after this, not cached here.)
_VERIFIED: dict[tuple[str, str], tuple[int, float]] = {}
_VERIFIED_MAX = 4096


def token_user_id(token: str, *, secret: str) -> int:
    """Return the user id a token was issued to, or raise InvalidTokenError."""
    key = (secret, token)
    known = _VERIFIED.get(key)
    if known is not None and known[1] > time.time():  # PyJWT's own rule: expired once exp <= now
        return known[0]
    user_id, expires = _verify(token, secret)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.pop(next(iter(_VERIFIED)))
    _VERIFIED[key] = (user_id, expires)
    return user_id


def _verify(token: str, secret: str) -> tuple[int, float]:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": _REQUIRED_CLAIMS}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidTokenError("Token has expired") from None
    except jwt.PyJWTError:
        raise InvalidTokenError() from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isdigit() or len(subject) > 10:
        raise InvalidTokenError()
    return int(subject), float(claims["exp"])


def bearer_user(connection: HTTPConnection) -> int | InvalidTokenError:
    """The user id the request's bearer token names, or the error that refuses it.

    Verified once per request and kept in the request state: the rate-limit key, idempotency and
    the current-user dependency all ask this, never the token itself.
    """
    state: dict[str, Any] = connection.scope.setdefault("state", {})
    outcome: int | InvalidTokenError | None = state.get(_PRINCIPAL)
    if outcome is None:
        scheme, token = get_authorization_scheme_param(connection.headers.get("authorization"))
        if scheme.lower() != "bearer" or not token:
            outcome = InvalidTokenError("Not authenticated")
        else:
            try:
                outcome = token_user_id(token, secret=connection.app.state.secret_key)
            except InvalidTokenError as exc:
                outcome = exc
        state[_PRINCIPAL] = outcome
    return outcome
