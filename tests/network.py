"""Loopback TCP helpers for fault tests: a proxy that can be cut, and a server that never answers.

Both run in their own threads, so they behave the same whatever the event loop under test is
doing (and a test can prove that loop is never blocked while they hang).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType


def _listen(port: int = 0) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    server.settimeout(0.1)
    return server


class _Server:
    def __init__(self) -> None:
        self.port = 0
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._server = _listen(self.port)
        self.port = self._server.getsockname()[1]
        self._stop.clear()
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        """Close the listener and cut every open connection, as a crashed server would."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.close()
            self._connections.clear()
        if self._server is not None:
            self._server.close()
            self._server = None

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    @property
    def connections(self) -> int:
        """Connections accepted so far (and still tracked)."""
        with self._lock:
            return len(self._connections)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.append(conn)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(conn)
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class BlackHole(_Server):
    """Accepts connections and never says a word: a hung server."""

    def _handle(self, conn: socket.socket) -> None:
        pass


class TcpProxy(_Server):
    """Forwards to `target`; `stop()` is an outage, `start()` again (same port) a recovery."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__()
        self._target = (target_host, target_port)

    def _handle(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=2)
        except OSError:
            conn.close()
            return
        self._track(upstream)
        self._spawn(self._pipe, conn, upstream)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            # One side hung up: hang up the other too, as a real connection would.
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
