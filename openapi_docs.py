"""How the OpenAPI schema documents responses and headers: every error body, every response
header described once, and the helpers routes use to name theirs (STYLE C21)."""

from __future__ import annotations

from typing import Any

from pydantic import WithJsonSchema

from models import ErrorBody

_ERROR_DESCRIPTIONS = {
    400: "Bad request: a body that cannot be parsed",
    401: "Missing, invalid or expired token",
    403: "The resource belongs to another user, or a personal API token may not do this"
    ' (`WWW-Authenticate: Bearer error="insufficient_scope"`)',
    404: "Not found",
    409: "Conflict",
    410: "Gone: the cursor is older than the events kept (EVENT_RETENTION_DAYS); resync",
    412: "If-Match names no current version: nothing was changed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Rate limit exceeded",
    502: "A backing service failed",
    503: "A backing service (the database, the file store) is unavailable: retry after a while",
    507: "The file store is full",
}


def header_schema(pattern: str, *, max_length: int, example: str | None = None) -> WithJsonSchema:
    """An optional request header's schema: a string or absent, never `null` (which a header
    cannot be, and which a fuzzer or generated client would otherwise try to send)."""
    schema: dict[str, Any] = {"type": "string", "pattern": pattern, "maxLength": max_length}
    return WithJsonSchema({**schema, "examples": [example]} if example else schema)


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


# Every response header the API sends, described once; routes name the ones they send
# (`with_headers`, `error_responses`), docs_ui.complete_schema adds the ones every response of a
# route carries (X-Request-Id; X-RateLimit-* where the route is rate limited).
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        **_header("This request's id (a valid incoming X-Request-Id is reused); in every log line"),
        "required": True,
    },
    "ETag": _header('The task\'s version as an entity tag, e.g. "3" (for If-Match, If-None-Match)'),
    "X-Total-Count": _header(
        "How many tasks match the filters, over all pages",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
    "Link": _header("RFC 8288 links to the `first`, `prev`, `next` and `last` pages"),
    "X-Cache": _header("HIT: served from the cache; MISS: computed", {"enum": ["HIT", "MISS"]}),
    "X-RateLimit-Limit": _header("Requests allowed in the window of the limit checked"),
    "X-RateLimit-Remaining": _header("Requests left in that window"),
    "X-RateLimit-Reset": _header("When that window resets (epoch seconds)"),
    "Retry-After": _header("Seconds to wait before retrying"),
    "WWW-Authenticate": _header(
        '`Bearer`: how to authenticate; `Bearer error="insufficient_scope"`: the personal API'
        " token's scopes do not allow this (RFC 6750)"
    ),
    "Idempotent-Replayed": _header(
        "`true`: the stored answer to an earlier request with this Idempotency-Key",
        {"enum": ["true"]},
    ),
    "Content-Disposition": _header(
        "`attachment` with the stored name (RFC 6266: `filename` and `filename*`)"
    ),
    "File-ETag": _header('The file\'s SHA-256 as an entity tag ("<64 hex digits>")'),
}
_ERROR_HEADERS = {
    401: ("WWW-Authenticate",),
    403: ("WWW-Authenticate",),  # on a personal token's refusal only
    429: ("Retry-After",),
    503: ("Retry-After",),
}


def headers_of(*names: str) -> dict[str, dict[str, Any]]:
    """OpenAPI header objects for these response headers (File-ETag is spelled ETag)."""
    return {name.removeprefix("File-"): RESPONSE_HEADERS[name] for name in names}


def with_headers(status: int, *names: str, **extra: Any) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI `responses=` entry for a success that carries these headers."""
    return {status: {"headers": headers_of(*names), **extra}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the standard error body for each code."""
    return {
        code: {
            "model": ErrorBody,
            "description": _ERROR_DESCRIPTIONS[code],
            **({"headers": headers_of(*_ERROR_HEADERS[code])} if code in _ERROR_HEADERS else {}),
        }
        for code in codes
    }
