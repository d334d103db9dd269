"""Reading the `file` part of a multipart/form-data body as a stream, never all at once.

Starlette's form parsing (and so FastAPI's `UploadFile`) spools the whole body before the
endpoint runs, which makes a size limit after the fact. Here python-multipart's push parser is
fed the request body chunk by chunk and the `file` part's data is handed on as it arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import (
    MAX_BOUNDARY_LENGTH,
    MultipartParser,
    parse_options_header,
)
from starlette.requests import ClientDisconnect

from exceptions import (
    BadRequestError,
    InvalidUploadError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)

FIELD_NAME = b"file"
# Room for the boundaries and part headers around a file of exactly the size limit.
MULTIPART_OVERHEAD = 64 * 1024
# Bounds on the form around the file: parts (the file and a few fields a client may add) and
# each part's headers. Beyond them the body is refused as it streams (400), whatever its size.
MAX_PARTS = 16
MAX_PART_HEADER_BYTES = 8 * 1024

_Event = tuple[str, bytes | dict[bytes, bytes] | None]


@dataclass
class FilePart:
    filename: str  # exactly as sent: not yet safe to show or store
    chunks: AsyncIterator[bytes]


def _boundary(content_type: str) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaTypeError("Send the file as multipart/form-data in the field 'file'")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > MAX_BOUNDARY_LENGTH:
        raise BadRequestError("The multipart body has no valid boundary")
    return boundary


class _Reader:
    """Turns python-multipart's callbacks into a stream of (kind, value) events."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes, *, max_body: int) -> None:
        self._body = body
        self._max_body = max_body
        self._received = 0
        self._events: deque[_Event] = deque()
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._parts = 0
        self._header_bytes = 0
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_field,
                "on_header_value": self._on_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": lambda: self._events.append(("headers", self._headers)),
                "on_part_data": lambda data, start, end: self._events.append(
                    ("data", data[start:end])
                ),
                "on_part_end": lambda: self._events.append(("end", None)),
            },
        )

    def _on_part_begin(self) -> None:
        self._headers = {}  # a new dict: the previous part's may still be in the queue
        self._parts += 1
        self._header_bytes = 0
        if self._parts > MAX_PARTS:
            raise BadRequestError(f"The multipart body has more than {MAX_PARTS} parts")

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise BadRequestError(
                f"A multipart part's headers exceed {MAX_PART_HEADER_BYTES} bytes"
            )

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    async def events(self) -> AsyncGenerator[_Event]:
        try:
            async for chunk in self._body:
                for event in self._feed(chunk):
                    yield event
        except ClientDisconnect:
            # Nobody is left to read the answer; a 400 keeps it out of the error log.
            raise BadRequestError("The client went away before the upload was complete") from None

    def _feed(self, chunk: bytes) -> list[_Event]:
        self._received += len(chunk)
        if self._received > self._max_body:
            raise PayloadTooLargeError(self._max_body - MULTIPART_OVERHEAD)
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise BadRequestError("The multipart body is malformed") from None
        events = list(self._events)
        self._events.clear()
        return events


def _file_name(headers: dict[bytes, bytes]) -> str | None:
    """The filename of the `file` part, or None for any other part."""
    # Header bytes are latin-1 on the wire format's terms; browsers put UTF-8 inside.
    _, options = parse_options_header(headers.get(b"content-disposition", b"").decode("latin-1"))
    if options.get(b"name") != FIELD_NAME or b"filename" not in options:
        return None
    return options[b"filename"].decode("utf-8", errors="replace")


async def _part_data(events: AsyncIterator[_Event]) -> AsyncGenerator[bytes]:
    async for kind, value in events:
        if kind == "end":
            return
        if kind == "data" and isinstance(value, bytes) and value:
            yield value
    raise BadRequestError("The request body ended before the file was complete")


@asynccontextmanager
async def open_file_part(
    body: AsyncIterator[bytes], *, content_type: str, max_body: int
) -> AsyncIterator[FilePart]:
    """The `file` part of a multipart body; its chunks are read from `body` as they are used."""
    reader = _Reader(body, _boundary(content_type), max_body=max_body)
    async with aclosing(reader.events()) as events:
        async for kind, value in events:
            if kind == "headers" and isinstance(value, dict):
                filename = _file_name(value)
                if filename is not None:
                    async with aclosing(_part_data(events)) as chunks:
                        yield FilePart(filename, chunks)
                    return
        raise InvalidUploadError("The form has no file in the field 'file'")
