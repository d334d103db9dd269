"""Slow clients: uvicorn's HTTP protocol with a header timeout and a body idle timeout.

uvicorn (0.54) bounds neither how long a request head may take nor how long a body may pause, so a
client that trickles bytes holds its connection for as long as it likes. Served with
`uvicorn main:app --http server_protocol:SlowClientProtocol` (Makefile, docker/entrypoint.sh,
scripts/deploy/runtime-process.sh, tests/live_server.py):

- CLIENT_HEADER_TIMEOUT: from the connection (or the end of the previous response on a kept-alive
  connection) until the request head is complete. Past it a half-sent head is answered 408 (the
  standard error body) and the connection closed; a connection that sent nothing is just closed.
- CLIENT_BODY_TIMEOUT: the longest pause between two pieces of a request body. Past it, 408 if
  no response has started (the app sees a disconnect), and the connection is closed. A pause
  because the app is not reading (uvicorn paused the socket, or `Expect: 100-continue` not yet
  answered) does not count. The access line and metrics show what the app made of the cut-off
  body (usually 400); the client gets the 408.

Timers are per connection, armed and checked lazily: a body chunk only notes the time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from exceptions import error_response
from settings import get_settings


def _timeout_response() -> bytes:
    """A 408 in the standard error body, as bytes after the status line and server headers."""
    response = error_response(
        408, "Request Timeout", "The request was not received in time; the connection is closed"
    )
    response.headers["Connection"] = "close"
    response.headers["X-Content-Type-Options"] = "nosniff"
    head = b"".join(name + b": " + value + b"\r\n" for name, value in response.raw_headers)
    return head + b"\r\n" + bytes(response.body)


class SlowClientProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that cuts off a client trickling its request head or body."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()  # cached: read once per process
        self.header_timeout = settings.client_header_timeout
        self.body_timeout = settings.client_body_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False  # bytes of a request head arrived, its end not yet
        self._body_seen = 0.0  # loop time of the last body chunk

    # --- the head ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        # Disarmed again at once by on_message_complete when there is no body.
        self._body_seen = self.loop.time()
        self._arm(self.body_timeout, self._body_timed_out)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: the connection now waits for the next head.
        if self.timeout_keep_alive_task is not None:
            self._arm(self.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._reply_408()
        self.transport.close()

    # --- the body ---

    def on_body(self, body: bytes) -> None:
        self._body_seen = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            # The app is not reading yet (or has not asked for the body): not the client's pause.
            self._body_seen = self.loop.time()
        idle = self.loop.time() - self._body_seen
        if idle < self.body_timeout:  # a chunk came meanwhile: wait out the rest
            self._arm(self.body_timeout - idle, self._body_timed_out)
            return
        if not cycle.response_started:
            self._reply_408()
            cycle.response_started = cycle.response_complete = True
        cycle.disconnected = True  # the app's receive() now answers http.disconnect
        cycle.message_event.set()
        self.transport.close()

    # --- timers ---

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(max(delay, 0.0), callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _reply_408(self) -> None:
        defaults = b"".join(n + b": " + v + b"\r\n" for n, v in self.server_state.default_headers)
        self.transport.write(STATUS_LINE[408] + defaults + _TIMEOUT_RESPONSE)


_TIMEOUT_RESPONSE = _timeout_response()
