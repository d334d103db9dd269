"""What an upload may be: display names, allowed types, and content checked against the type.

Nothing the client says is trusted: the name is reduced to a safe display string, the type comes
from our own table for the extension, and the bytes must carry that type's signature.
"""

from __future__ import annotations

import codecs
import hashlib
import posixpath
import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from exceptions import PayloadTooLargeError, UnsupportedMediaTypeError

MAX_FILENAME_CHARS = 255
SNIFF_BYTES = 512
# Controls, DEL, C1 controls, line/paragraph separators and bidi overrides ("gpj.exe" shown
# as "exe.jpg"): none belongs in a file name a person reads.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_MARKUP_STARTS = (b"<html", b"<!doctype", b"<script", b"<svg", b"<?xml", b"<body", b"<iframe")
# RFC 5987 attr-char, minus nothing: what may stay unescaped in filename*=.
_ATTR_CHARS = "!#$&+-.^_`|~"


@dataclass(frozen=True)
class FileType:
    content_type: str
    signatures: tuple[bytes, ...] = ()
    text: bool = False


_JPEG = FileType("image/jpeg", (b"\xff\xd8\xff",))
FILE_TYPES: dict[str, FileType] = {
    ".jpg": _JPEG,
    ".jpeg": _JPEG,
    ".png": FileType("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".gif": FileType("image/gif", (b"GIF87a", b"GIF89a")),
    ".pdf": FileType("application/pdf", (b"%PDF-",)),
    ".doc": FileType("application/msword", (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",)),
    ".docx": FileType(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        (b"PK\x03\x04",),
    ),
    ".txt": FileType("text/plain; charset=utf-8", text=True),
}
# Content that must never pass as text even when it happens to be valid UTF-8.
_BINARY_SIGNATURES = (
    *(sig for file_type in FILE_TYPES.values() for sig in file_type.signatures),
    b"\x7fELF",
    b"MZ",
    b"\xca\xfe\xba\xbe",
    b"\xcf\xfa\xed\xfe",
    b"#!",
)


def display_name(raw: str) -> str:
    """The client's file name reduced to its last path segment, printable, at most 255 chars."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/")
    name = posixpath.basename(name)
    name = _UNSAFE_CHARS.sub("", name).strip().strip(".").strip()
    if not name:
        return "file"
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        return name[:MAX_FILENAME_CHARS]
    return f"{stem[: MAX_FILENAME_CHARS - len(ext) - 1].rstrip()}.{ext}"


def file_type_for(filename: str, *, allowed: Sequence[str]) -> FileType:
    """The type an upload claims by its extension, if that extension is allowed (else 415)."""
    _, dot, ext = filename.lower().rpartition(".")
    extension = f".{ext}" if dot else ""
    if extension not in allowed or extension not in FILE_TYPES:
        raise UnsupportedMediaTypeError(
            f"Files of type '{extension or 'none'}' are not accepted; allowed: {', '.join(allowed)}"
        )
    return FILE_TYPES[extension]


def _looks_like(file_type: FileType, head: bytes) -> bool:
    if not file_type.text:
        return head.startswith(file_type.signatures)
    if head.startswith(_BINARY_SIGNATURES):
        return False
    start = head.removeprefix(codecs.BOM_UTF8).lstrip().lower()
    return not start.startswith(_MARKUP_STARTS)


def _mismatch() -> UnsupportedMediaTypeError:
    return UnsupportedMediaTypeError("The file's content does not match its extension")


class ContentCheck:
    """Passes an upload's chunks through while counting, hashing and checking them.

    Raises 413 as soon as the size passes the limit and 415 when the content is not what the
    extension says; the first SNIFF_BYTES are held back until checked, so nothing unverified is
    ever handed on. Memory stays at one chunk plus SNIFF_BYTES.
    """

    def __init__(self, file_type: FileType, *, max_size: int) -> None:
        self.file_type = file_type
        self.max_size = max_size
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._decoder = codecs.getincrementaldecoder("utf-8")() if file_type.text else None

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def _take(self, chunk: bytes, *, final: bool = False) -> None:
        self.size += len(chunk)
        if self.size > self.max_size:
            raise PayloadTooLargeError(self.max_size)
        self._sha256.update(chunk)
        if self._decoder is not None:
            try:
                text = self._decoder.decode(chunk, final=final)
            except UnicodeDecodeError:
                raise _mismatch() from None
            if "\x00" in text:
                raise _mismatch()

    async def chunks(self, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        head = b""
        checked = False
        async for chunk in source:
            self._take(chunk)
            if checked:
                yield chunk
                continue
            head += chunk
            if len(head) >= SNIFF_BYTES:
                checked = self._check_head(head)
                yield head
        self._take(b"", final=True)
        if not checked:
            self._check_head(head)
            if head:
                yield head

    def _check_head(self, head: bytes) -> bool:
        empty_text = not head and self.file_type.text  # an empty text file is a text file
        if not empty_text and not _looks_like(self.file_type, head):
            raise _mismatch()
        return True


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact name per RFC 6266 / RFC 5987."""
    fallback = "".join(
        char if " " <= char <= "~" and char not in '"\\;%' else "_" for char in filename
    )
    encoded = quote(filename, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{encoded}"
