"""Password hashing (bcrypt, off the event loop) and JWT access tokens (PyJWT, HS256 only)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import bcrypt
import jwt
from anyio import to_thread

from exceptions import InvalidTokenError
from models import MAX_BCRYPT_BYTES

ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["exp", "sub", "iat"]


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


# Tokens already verified, with the user id and expiry they carry: a client sends the same token
# with every request (to the limiter, the idempotency check and the route), and checking its
# HMAC and parsing its claims each time was ~6 % of a read. Bounded; oldest entries go first.
_VERIFIED: dict[tuple[str, str], tuple[int, float]] = {}
_VERIFIED_MAX = 2048


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
