"""The request pipeline's one middleware, with one wrapper around `send`.

For each HTTP request it sets the request id (logs and the X-Request-Id header), refuses an
oversized body with 413 before anything reads or parses it, adds the rate-limit headers to every
limited response (errors included; Retry-After on 429 and 503 only), makes a redirect's Location
relative (never the client's Host), counts the request in the metrics by route template, writes
the access line, and as the outermost layer turns any exception that escaped the app's exception
handlers into the standard 500 body (logged once, with its traceback).

Body limit: a Content-Length over the limit is refused at once; a chunked body is counted as it
streams and cut off at the limit. Multipart bodies get a generous ceiling above the upload limit:
the upload endpoint itself enforces the exact file size while streaming.
"""

from __future__ import annotations

import logging
import os
import re
import time
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exceptions import error_response, unhandled_error_response
from logging_config import request_id_var
from metrics import observe_request
from rate_limit_config import add_rate_limit_headers

access_logger = logging.getLogger("access")
logger = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_OURS = (b"x-request-id", b"x-content-type-options")


class _BodyTooLarge(Exception):
    pass


class _Exchange:
    """One request's response side: its status, and the send wrapper that decorates the start."""

    __slots__ = (
        "_send",
        "exceeded",
        "limit",
        "refused",
        "request_id",
        "scope",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, send: Send, request_id: str, limit: int) -> None:
        self.scope = scope
        self._send = send
        self.request_id = request_id.encode("latin-1")
        self.limit = limit
        self.status = 500
        self.started = self.exceeded = self.refused = False

    async def send(self, message: Message) -> None:
        """What the app sends through."""
        if self.exceeded:
            # Whatever the app made of the cut-off body (FastAPI turns read errors into a 400),
            # the client is told the truth: 413.
            if not self.refused:
                await self.refuse(_disconnect)
            return
        if message["type"] == "http.response.start":
            await self._start(message, limited=True)
        await self._send(message)

    async def respond(self, response: Response, receive: Receive) -> None:
        """A response of the pipeline's own (413, the last-resort 500): no rate-limit headers."""

        async def own_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._start(message, limited=False)
            await self._send(message)

        await response(self.scope, receive, own_send)

    async def refuse(self, receive: Receive) -> None:
        self.refused = True
        response = error_response(
            413, "Payload Too Large", f"The request body exceeds the limit of {self.limit} bytes"
        )
        response.headers["Connection"] = "close"
        await self.respond(response, receive)

    async def _start(self, message: Message, *, limited: bool) -> None:
        self.status = message["status"]
        self.started = True
        # Set (replace) our headers on the raw list: MutableHeaders cost ~10 % of a read.
        headers = [h for h in message.get("headers", ()) if h[0].lower() not in _OURS]
        if 300 <= self.status < 400:
            headers = [_relative_location(h) for h in headers]
        if limited:
            await add_rate_limit_headers(self.scope, headers, status=self.status)
        headers.append((b"x-request-id", self.request_id))
        headers.append((b"x-content-type-options", b"nosniff"))
        message["headers"] = headers

    def counting(self, receive: Receive) -> Receive:
        """`receive`, cut off once the body passes the limit."""
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    self.exceeded = True
                    raise _BodyTooLarge
            return message

        return counting_receive


def _relative_location(header: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """A redirect's Location as a path-absolute reference: Starlette's trailing-slash redirect
    builds an absolute URL from the Host header, which is the client's to choose. The app never
    redirects to another site, so the path and query are all a Location needs; one leading slash,
    so `//host/` (a request for `//host//`) cannot become a scheme-relative redirect elsewhere."""
    name, value = header
    if name.lower() != b"location":
        return header
    parts = urlsplit(value)
    relative = b"/" + parts.path.lstrip(b"/") + (b"?" + parts.query if parts.query else b"")
    return name, relative


async def _disconnect() -> Message:
    return {"type": "http.disconnect"}


class RequestContextMiddleware:
    """Request id, body limit, rate-limit headers, metrics, access log and the last-resort 500."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        # Only a backstop for multipart: the upload route enforces the exact file size while it
        # streams, and must see the body first (a client's chunks can be megabytes each).
        self.max_multipart = 2 * max_upload + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, content_type, declared = _read_headers(scope)
        if not _VALID_REQUEST_ID.match(request_id):
            request_id = os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, at a third the cost
        token = request_id_var.set(request_id)
        multipart = content_type.lower().startswith(b"multipart/form-data")
        limit = self.max_multipart if multipart else self.max_body
        exchange = _Exchange(scope, send, request_id, limit)
        started = time.perf_counter()
        try:
            await self._serve(scope, receive, exchange, declared)
        finally:
            duration = time.perf_counter() - started
            observe_request(scope, exchange.status, duration)
            _log_access(scope, exchange.status, duration)
            request_id_var.reset(token)

    async def _serve(
        self, scope: Scope, receive: Receive, exchange: _Exchange, declared: bytes | None
    ) -> None:
        if declared is not None and (not declared.isdigit() or int(declared) > exchange.limit):
            await exchange.refuse(receive)
            return
        # With a Content-Length the server delivers no more than declared: nothing to count.
        app_receive = receive if declared is not None else exchange.counting(receive)
        try:
            await self.app(scope, app_receive, exchange.send)
        except _BodyTooLarge:
            pass
        except Exception as exc:
            if exchange.started:
                logger.exception("unhandled error after the response started")
                raise
            # 503 for an outage (outages.database_unavailable), else a logged 500.
            await exchange.respond(unhandled_error_response(exc), receive)
        if exchange.exceeded and not exchange.refused:
            await exchange.refuse(receive)


def _read_headers(scope: Scope) -> tuple[str, bytes, bytes | None]:
    """X-Request-Id (the first), Content-Type and Content-Length (the last), in one pass."""
    request_id: bytes | None = None
    content_type, declared = b"", None
    for name, value in scope["headers"]:
        if name == b"x-request-id" and request_id is None:
            request_id = value
        elif name == b"content-type":
            content_type = value
        elif name == b"content-length":
            declared = value
    return (request_id or b"").decode("latin-1"), content_type, declared


def _log_access(scope: Scope, status: int, duration: float) -> None:
    if not access_logger.isEnabledFor(logging.INFO):  # skip building the record when off
        return
    duration_ms = round(duration * 1000, 1)
    access_logger.info(
        "%s %s %s %.1fms",
        scope["method"],
        scope["path"],
        status,
        duration_ms,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": duration_ms,
        },
    )
