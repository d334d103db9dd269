"""Refuse oversized request bodies with 413 before anything reads or parses them.

Content-Length over the limit is refused at once; a chunked body is counted as it streams and cut
off at the limit. Multipart bodies get a generous ceiling above the upload limit: the upload
endpoint itself enforces the exact file size while streaming.
"""

from __future__ import annotations

import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exceptions import error_response

MULTIPART_OVERHEAD = 64 * 1024


class _BodyTooLarge(Exception):
    pass


class RequestSizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    def _limit(self, scope: Scope) -> int:
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.lower().startswith(b"multipart/form-data"):
            # Only a backstop: the upload route enforces the exact file size while it streams,
            # and must see the body first (a client's chunks can be megabytes each).
            return 2 * self.max_upload + MULTIPART_OVERHEAD
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app made of the cut-off body (FastAPI turns read errors into a 400),
            # the client is told the truth: 413.
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(scope, receive, send, limit)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not refused:
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            413, "Payload Too Large", f"The request body exceeds the limit of {limit} bytes"
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
