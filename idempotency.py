"""Idempotency keys (as Stripe does them) for the endpoints that create or change many things.

A client sends `Idempotency-Key: <up to 255 characters>` with `POST /tasks`,
`POST /tasks/{id}/files` or `PATCH /tasks/bulk`. The first request reserves the key for its user
in the database (so every instance sees it, and it survives a restart), runs, and stores its
status and body. A retry with the same key and the same request gets that stored response back
without the work being done again (`Idempotent-Replayed: true`); the same key with a different
request is a 422; a retry while the first is still running is a 409. Keys are per user and kept
24 hours. A reservation whose request died without finishing is taken over after a lease
(IDEMPOTENCY_LEASE_SECONDS), so a crash never locks a key for good; 5xx answers are not stored,
so they can be retried.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import token_user_id
from db_models import IdempotencyKey, utcnow
from exceptions import InvalidTokenError, error_response

logger = logging.getLogger(__name__)

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)
_SPOOL_IN_MEMORY = 1024 * 1024
_CHUNK = 64 * 1024
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
_ROUTES = (
    ("POST", re.compile(r"^/tasks/?$")),
    ("PATCH", re.compile(r"^/tasks/bulk/?$")),
    ("POST", re.compile(r"^/tasks/[^/]+/files/?$")),
)


def _applies(scope: Scope) -> bool:
    return any(scope["method"] == m and p.match(scope["path"]) for m, p in _ROUTES)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


@dataclass
class _Captured:
    status: int = 500
    content_type: str = "application/json"
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, lease_seconds: float) -> None:
        self.app = app
        self.lease = timedelta(seconds=lease_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, HEADER) if scope["type"] == "http" else None
        if key is None or not _applies(scope):
            await self.app(scope, receive, send)
            return
        if not _KEY_PATTERN.match(key):
            await self._answer(
                scope, receive, send, 422, "Invalid Idempotency Key",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            )  # fmt: skip
            return
        user_id = self._user_id(scope)
        if user_id is None:  # the app answers 401 itself
            await self.app(scope, receive, send)
            return
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
            fingerprint = await self._spool(scope, receive, body)
            await self._handle(scope, send, body, user_id=user_id, key=key, fingerprint=fingerprint)

    def _user_id(self, scope: Scope) -> int | None:
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return token_user_id(token, secret=scope["app"].state.secret_key)
        except InvalidTokenError:
            return None

    @staticmethod
    async def _spool(
        scope: Scope, receive: Receive, body: tempfile.SpooledTemporaryFile[bytes]
    ) -> str:
        """Read the whole request body (bounded memory) and fingerprint method, path and body."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body.write(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body.seek(0)
        digest = _fingerprint(scope, body)
        body.seek(0)
        return digest

    async def _handle(
        self,
        scope: Scope,
        send: Send,
        body: tempfile.SpooledTemporaryFile[bytes],
        *,
        user_id: int,
        key: str,
        fingerprint: str,
    ) -> None:
        sessions: async_sessionmaker[AsyncSession] = scope["app"].state.sessionmaker
        async with sessions() as session:
            existing = await _reserve(session, user_id, key, fingerprint, self.lease)
        if existing is not None:
            await self._replay_or_refuse(scope, send, existing, fingerprint)
            return
        captured = _Captured()
        try:
            await self.app(scope, _replaying(body), _capturing(captured))
        finally:
            async with sessions() as session:
                await _finish(session, user_id, key, captured)
        await _send(send, captured, replayed=False)

    async def _replay_or_refuse(
        self, scope: Scope, send: Send, existing: IdempotencyKey, fingerprint: str
    ) -> None:
        noop = _noop_receive
        if existing.fingerprint != fingerprint:
            await self._answer(
                scope, noop, send, 422, "Idempotency Key Reused",
                "This Idempotency-Key was used with a different request",
            )  # fmt: skip
        elif existing.status_code is None:
            await self._answer(
                scope, noop, send, 409, "Request In Progress",
                "A request with this Idempotency-Key is still being processed; retry later",
            )  # fmt: skip
        else:
            stored = _Captured(
                existing.status_code, existing.content_type or "", existing.response_body or b""
            )
            await _send(send, stored, replayed=True)

    @staticmethod
    async def _answer(
        scope: Scope, receive: Receive, send: Send, status: int, title: str, message: str
    ) -> None:
        await error_response(status, title, message)(scope, receive, send)


def _multipart_boundary(scope: Scope) -> bytes | None:
    content_type = _header(scope, b"content-type") or ""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/") or match is None:
        return None
    return match.group(1).encode("latin-1")


def _fingerprint(scope: Scope, body: tempfile.SpooledTemporaryFile[bytes]) -> str:
    """SHA-256 of method, path and body. A multipart boundary is the client's random choice,
    so a retry may pick another: it is hashed as a fixed token."""
    digest = hashlib.sha256(f"{scope['method']} {scope['path']}\n".encode())
    boundary = _multipart_boundary(scope)
    if boundary is None:
        while chunk := body.read(_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    # Keep the last len(boundary) - 1 bytes back, so a boundary split between reads is replaced.
    keep, carry = len(boundary) - 1, b""
    while chunk := body.read(_CHUNK):
        data = (carry + chunk).replace(boundary, b"\x00boundary\x00")
        cut = max(len(data) - keep, 0)
        digest.update(data[:cut])
        carry = data[cut:]
    digest.update(carry)
    return digest.hexdigest()


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


def _replaying(body: tempfile.SpooledTemporaryFile[bytes]) -> Receive:
    async def receive() -> Message:
        chunk = body.read(_CHUNK)
        return {"type": "http.request", "body": chunk, "more_body": len(chunk) == _CHUNK}

    return receive


def _capturing(captured: _Captured) -> Send:
    parts: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.status = message["status"]
            captured.headers = list(message.get("headers", []))
            for name, value in captured.headers:
                if name.lower() == b"content-type":
                    captured.content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            captured.body = b"".join(parts)

    return send


async def _send(send: Send, response: _Captured, *, replayed: bool) -> None:
    """Send a captured answer: live with all its headers, replayed with the stored essentials."""
    headers = response.headers or [
        (b"content-type", response.content_type.encode("latin-1")),
        (b"content-length", str(len(response.body)).encode()),
    ]
    if replayed:
        headers = [*headers, (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _reserve(
    session: AsyncSession, user_id: int, key: str, fingerprint: str, lease: timedelta
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
        return await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == user_id, IdempotencyKey.key == key
            )
        )
    return None


async def _finish(session: AsyncSession, user_id: int, key: str, captured: _Captured) -> None:
    """Store a final answer; free the key after a server error so the client can retry."""
    match = (IdempotencyKey.user_id == user_id) & (IdempotencyKey.key == key)
    if captured.status >= 500:
        await session.execute(delete(IdempotencyKey).where(match))
    else:
        await session.execute(
            update(IdempotencyKey)
            .where(match)
            .values(
                status_code=captured.status,
                content_type=captured.content_type,
                response_body=captured.body,
            )
        )
    await session.commit()
