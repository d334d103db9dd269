"""Password hashing (argon2id via pwdlib, off the event loop; bcrypt hashes still verify) and
JWT access tokens (PyJWT, HS256 only) naming the session they belong to."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
from anyio import to_thread
from fastapi.security.utils import get_authorization_scheme_param
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from starlette.requests import HTTPConnection

from exceptions import InvalidTokenError
from settings import HashCost

ALGORITHM = "HS256"
PAT_PREFIX = "tm_pat_"
_REQUIRED_CLAIMS = ["exp", "sub", "iat", "sid"]
# The request-state key under which bearer_user keeps its outcome.
_PRINCIPAL = "principal"


@lru_cache(maxsize=4)
def _hasher(cost: HashCost) -> PasswordHash:
    # The first hasher makes new hashes; bcrypt's only verifies the hashes made before argon2.
    argon2 = Argon2Hasher(time_cost=cost.time_cost, memory_cost=cost.memory_kib)
    return PasswordHash((argon2, BcryptHasher()))


@lru_cache(maxsize=4)
def _dummy_hash(cost: HashCost) -> str:
    return _hasher(cost).hash("dummy-password-for-timing")


def _verify_sync(password: str, hashed: str, cost: HashCost) -> tuple[bool, str | None]:
    try:
        return _hasher(cost).verify_and_update(password, hashed)
    except ValueError:  # bcrypt 5 refuses a password over 72 bytes: no old hash can match it
        return False, None


async def hash_password(password: str, *, cost: HashCost) -> str:
    return await to_thread.run_sync(_hasher(cost).hash, password)


async def verify_password(
    password: str, hashed: str | None, *, cost: HashCost
) -> tuple[bool, str | None]:
    """Whether the password matches, and the hash to store instead when it was made with an
    older scheme or cost (bcrypt, other argon2 parameters). With no hash (unknown user) a dummy
    is checked, so the time taken reveals nothing."""
    if hashed is None:
        await to_thread.run_sync(_verify_sync, password, _dummy_hash(cost), cost)
        return False, None
    return await to_thread.run_sync(_verify_sync, password, hashed, cost)


def new_secret(prefix: str = "") -> tuple[str, str]:
    """An opaque random token (256 bits) and its SHA-256, the only form that is stored."""
    token = prefix + secrets.token_urlsafe(32)
    return token, secret_hash(token)


def secret_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: a user, through one credential (a login session or a personal API token).
    `scopes` is None for a session (it may do everything), a token's scopes otherwise."""

    user_id: int
    credential_id: int
    scopes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What a personal API token's row says (never changes: revoking deletes the row)."""

    principal: Principal
    expires_at: float  # epoch seconds; inf: never


# Looks a personal token up by its SHA-256 (services.api_tokens.lookup, installed by main.py).
TokenLookup = Callable[[str], Awaitable[TokenFacts | None]]


def create_access_token(user_id: int, *, session_id: int, secret: str, expires_minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "sid": session_id,
        "iat": now,
        "exp": now + timedelta(minutes=expires_minutes),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens already verified, with the user id and expiry they carry. A client sends the same token
# with every request, and checking its HMAC and parsing its claims was 14-15 % of the CPU of
# `GET /tasks/{id}` and of a stats hit (py-spy, docs/PERFORMANCE.md). A shortcut inside the one
# place that verifies a token: keyed by the secret too, bounded (oldest entries go first), and an
# entry is never used past the token's own expiry. Revocation is not cached here: the session
# a token names is checked by the statement that loads the caller's data
# (services.access.caller_clause), on every request, on every instance.
_VERIFIED: dict[tuple[str, str], tuple[Principal, float]] = {}
_VERIFIED_MAX = 4096
# A personal token's row is looked up again this often (seconds): see api_token_principal.
PAT_RECHECK_SECONDS = 300


def token_principal(token: str, *, secret: str) -> Principal:
    """Return who a token was issued to, or raise InvalidTokenError."""
    key = (secret, token)
    known = _VERIFIED.get(key)
    if known is not None and known[1] > time.time():  # PyJWT's own rule: expired once exp <= now
        return known[0]
    principal, expires = _verify(token, secret)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.pop(next(iter(_VERIFIED)))
    _VERIFIED[key] = (principal, expires)
    return principal


def _id_claim(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
        return value
    return None


def _verify(token: str, secret: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": _REQUIRED_CLAIMS}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidTokenError("Token has expired") from None
    except jwt.MissingRequiredClaimError:
        # A token from before sessions (no `sid`) could never be revoked: log in again.
        raise InvalidTokenError("Token has no session; log in again") from None
    except jwt.PyJWTError:
        raise InvalidTokenError() from None
    user_id, session_id = _id_claim(claims["sub"]), _id_claim(claims["sid"])
    if user_id is None or session_id is None:
        raise InvalidTokenError()
    return Principal(user_id, session_id), float(claims["exp"])


async def api_token_principal(token: str, *, lookup: TokenLookup) -> Principal:
    """Who a personal API token (`tm_pat_…`) belongs to, or raise InvalidTokenError. Its row's
    facts are cached like a verified JWT's, but looked up again after PAT_RECHECK_SECONDS: a
    revoked token's id stays on its user's revoked list at least that long
    (services.sessions.revoke), which every statement checks (services.access.caller_clause)."""
    key = ("", token)  # no secret key: the lookup, not a signature, verifies it
    known = _VERIFIED.get(key)
    now = time.time()
    if known is None or known[1] <= now:
        facts = await lookup(secret_hash(token))
        if facts is None:
            raise InvalidTokenError()
        if facts.expires_at <= now:
            raise InvalidTokenError("Token has expired")
        known = (facts.principal, min(facts.expires_at, now + PAT_RECHECK_SECONDS))
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.pop(next(iter(_VERIFIED)))
        _VERIFIED[key] = known
    return known[0]


async def bearer_user(connection: HTTPConnection) -> Principal | InvalidTokenError:
    """Who the request's bearer token names, or the error that refuses it.

    Verified once per request and kept in the request state: the rate-limit key, idempotency and
    the current-user dependency all ask this, never the token itself.
    """
    state: dict[str, Any] = connection.scope.setdefault("state", {})
    outcome: Principal | InvalidTokenError | None = state.get(_PRINCIPAL)
    if outcome is None:
        scheme, token = get_authorization_scheme_param(connection.headers.get("authorization"))
        app_state = connection.app.state
        try:
            if scheme.lower() != "bearer" or not token:
                raise InvalidTokenError("Not authenticated")
            if token.startswith(PAT_PREFIX):
                outcome = await api_token_principal(token, lookup=app_state.token_lookup)
            else:
                outcome = token_principal(token, secret=app_state.secret_key)
        except InvalidTokenError as exc:
            outcome = exc
        state[_PRINCIPAL] = outcome
    return outcome
