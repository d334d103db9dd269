"""The webhook receiver of the deliveries scenario (bench/bench_deliveries.py): raw asyncio on
uvloop, so it is never the bottleneck. Every POST is read whole and answered 200 (then the
connection closes, as the deliveries ask) and counted; `GET /stats` answers the count and the
monotonic times of the first and last POST as JSON, `GET /reset` zeroes them.

    .venv/bin/python bench/receiver.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import cast

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None

    def reset(self) -> None:
        self.count, self.first, self.last = 0, None, None

    def hit(self) -> None:
        now = time.monotonic()
        self.count += 1
        self.first = now if self.first is None else self.first
        self.last = now

    def stats(self) -> bytes:
        body = json.dumps({"count": self.count, "first": self.first, "last": self.last}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        return head.encode() + b"\r\nConnection: close\r\n\r\n" + body


class Receiver(asyncio.Protocol):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.transport is None:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return  # the body is not all here yet
        method, path = [*head[0].split(" "), ""][:2]
        if method == "POST":
            self.counter.hit()
            answer = _OK
        else:
            if path == "/reset":
                self.counter.reset()
            answer = self.counter.stats()
        self.transport.write(answer)
        self.transport.close()
        self.buffer.clear()


async def serve(port: int) -> None:
    counter = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Receiver(counter), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:  # plain asyncio is fast enough too
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
