"""Paging headers every paged list sends: X-Total-Count and an RFC 8288 Link header."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode

from fastapi import Request

_PAGING = frozenset(("skip", "limit"))


def pagination_headers(request: Request, *, total: int, skip: int, limit: int) -> dict[str, str]:
    """X-Total-Count and an RFC 8288 Link header, so clients page without guessing."""
    links = {"first": 0, "last": max(total - 1, 0) // limit * limit}
    if skip + limit < total:
        links["next"] = skip + limit
    if skip > 0:
        links["prev"] = max(skip - limit, 0)
    # Relative references (RFC 8288 resolves them against the request URL): the Host header is
    # the client's to choose, so it never goes into a response. The other query parameters
    # keep their order, then skip and limit.
    url = request.url
    kept = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in _PAGING]
    base = quote(url.path) + "?" + (urlencode(kept) + "&" if kept else "")
    link = ", ".join(
        f'<{base}skip={offset}&limit={limit}>; rel="{rel}"' for rel, offset in links.items()
    )
    return {"X-Total-Count": str(total), "Link": link}
