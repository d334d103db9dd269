"""Idempotency keys (as Stripe does them), declared on the route with `@idempotent`.

A client sends `Idempotency-Key: <up to 255 characters>` with `POST /tasks`,
`POST /tasks/{id}/files` or `PATCH /tasks/bulk`. The first request reserves the key for its user
in the database (so every instance sees it, and it survives a restart), runs, and stores its
status and body. A retry with the same key and the same request gets that stored response back
without the work being done again (`Idempotent-Replayed: true`); the same key with a different
request is a 422; a retry while the first is still running is a 409. Keys are per user and kept
24 hours. A request that fails (5xx, an exception, a cancelled task) releases its key at once,
so a retry runs; a reservation whose process died is taken over after a lease
(IDEMPOTENCY_LEASE_SECONDS), so a crash never locks a key for good.

The check wraps the route's handling (`IdempotentRoute`): it runs after routing and inside the
app's exception handlers, so a database outage while reserving is the usual 503.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from anyio import CancelScope, to_thread
from fastapi import Depends, Header
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import bearer_user
from db_models import IdempotencyKey
from exceptions import (
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
    InvalidTokenError,
    RequestInProgressError,
)
from openapi_docs import error_responses, header_schema, headers_of
from services import idempotency as idempotency_service
from services.access import act_as

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255
# The request body is spooled to this size in memory, then to a temporary file (uploads).
_SPOOL_IN_MEMORY = 1024 * 1024
_CHUNK = 64 * 1024
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY_PATTERN = re.compile(KEY_PATTERN)
_MARK = "__idempotent__"
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_Body = tempfile.SpooledTemporaryFile[bytes]


def idempotent(endpoint: _Endpoint) -> _Endpoint:
    """Declare that the route honours Idempotency-Key (its router uses IdempotentRoute)."""
    setattr(endpoint, _MARK, True)
    return endpoint


async def declared_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=KEY_PATTERN,
            description="1-255 printable ASCII characters, yours for 24 hours: a retry with the"
            " same key and body gets the first answer again (`Idempotent-Replayed: true`); the"
            " same key with another body is a 422, while the first still runs a 409",
        ),
        # No example: one key sent to every operation is a reuse with another request (a 422).
        header_schema(KEY_PATTERN, max_length=MAX_KEY_LENGTH),
    ] = None,
) -> None:
    """Declares Idempotency-Key for the schema (and checks it as the schema says): the key
    itself is read from the raw request by `_KeyedRequests`, before the route runs."""


def _documented(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The route's options with the key declared and its answers documented (409, 422, and
    Idempotent-Replayed on the success); FastAPI rebuilds an included route, hence the guard."""
    dependencies = list(kwargs.get("dependencies") or [])
    if not any(d.dependency is declared_key for d in dependencies):
        dependencies.append(Depends(declared_key))
    responses = {**error_responses(409, 422), **(kwargs.get("responses") or {})}
    success = kwargs.get("status_code") or 200
    ok = dict(responses.get(success, {}))
    ok["headers"] = {**ok.get("headers", {}), **headers_of("Idempotent-Replayed")}
    responses[success] = ok
    return {**kwargs, "dependencies": dependencies, "responses": responses}


class IdempotentRoute(APIRoute):
    """An APIRoute that puts the Idempotency-Key check in front of an `@idempotent` endpoint."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        marked = getattr(endpoint, _MARK, False)
        super().__init__(path, endpoint, **(_documented(kwargs) if marked else kwargs))
        self._keyed = _KeyedRequests(super().handle) if marked else None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # `handle`, not `self.app`: FastAPI serves an included router's routes through `handle`.
        if self._keyed is None or scope["method"] not in (self.methods or ()):
            await super().handle(scope, receive, send)
        else:
            await self._keyed(scope, receive, send)


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


@dataclass
class _Claim:
    user_id: int
    key: str
    fingerprint: str


class _KeyedRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not _KEY_PATTERN.match(key):
            raise InvalidIdempotencyKeyError(MAX_KEY_LENGTH)
        caller = await bearer_user(HTTPConnection(scope))
        if isinstance(caller, InvalidTokenError):  # the route answers 401 itself
            await self.app(scope, receive, send)
            return
        user_id = caller.user_id
        act_as(caller)  # the statements below check this credential (access.caller_clause)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
            size = await _spool(receive, body)
            if size > _SPOOL_IN_MEMORY:  # on disk: hash it off the event loop
                fingerprint = await to_thread.run_sync(_fingerprint, scope, body)
            else:
                fingerprint = _fingerprint(scope, body)
            body.seek(0)
            claim = _Claim(user_id, key, fingerprint)
            await self._run(scope, _replaying(body, receive, size), send, claim)

    async def _run(self, scope: Scope, receive: Receive, send: Send, claim: _Claim) -> None:
        state = scope["app"].state
        sessions: async_sessionmaker[AsyncSession] = state.sessionmaker
        lease = timedelta(seconds=state.settings.idempotency_lease_seconds)
        async with sessions() as session:
            existing = await idempotency_service.reserve(
                session,
                user_id=claim.user_id,
                key=claim.key,
                fingerprint=claim.fingerprint,
                lease=lease,
            )
        if existing is not None:
            await _replay(send, existing, claim.fingerprint)
            return
        captured = _Captured()
        try:
            await self.app(scope, receive, _capturing(captured))
        finally:
            # Shielded: a cancelled request still releases its key (a retry must not wait).
            with CancelScope(shield=True):
                await _finish(sessions, claim, captured)
        await _send(send, captured, replayed=False)


async def _replay(send: Send, existing: IdempotencyKey, fingerprint: str) -> None:
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReusedError()
    if existing.status_code is None:
        raise RequestInProgressError()
    stored = _Captured(
        existing.status_code, existing.content_type or "", existing.response_body or b""
    )
    await _send(send, stored, replayed=True)


async def _finish(
    sessions: async_sessionmaker[AsyncSession], claim: _Claim, captured: _Captured
) -> None:
    """Store a final answer; release the key after a server error so the client can retry."""
    async with sessions() as session:
        if captured.status >= 500:
            await idempotency_service.release(session, user_id=claim.user_id, key=claim.key)
        else:
            await idempotency_service.store(
                session,
                user_id=claim.user_id,
                key=claim.key,
                status_code=captured.status,
                content_type=captured.content_type,
                body=captured.body,
            )


async def _spool(receive: Receive, body: _Body) -> int:
    """Read the whole request body into `body` (bounded memory); return its size."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _SPOOL_IN_MEMORY:
            await to_thread.run_sync(body.write, chunk)  # a file on disk by now
        else:
            body.write(chunk)
        if not message.get("more_body", False):
            break
    body.seek(0)
    return size


def _multipart_boundary(scope: Scope) -> bytes | None:
    content_type = _header(scope, b"content-type") or ""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/") or match is None:
        return None
    return match.group(1).encode("latin-1")


def _fingerprint(scope: Scope, body: _Body) -> str:
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


def _replaying(body: _Body, receive: Receive, size: int) -> Receive:
    """The spooled body, chunk by chunk; after it, the client's own receive (a disconnect)."""
    on_disk = size > _SPOOL_IN_MEMORY
    sent = 0
    done = False

    async def replay() -> Message:
        nonlocal sent, done
        if done:
            return await receive()
        chunk = await to_thread.run_sync(body.read, _CHUNK) if on_disk else body.read(_CHUNK)
        sent += len(chunk)
        done = sent >= size
        return {"type": "http.request", "body": chunk, "more_body": not done}

    return replay


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
