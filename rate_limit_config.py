"""Rate limits: slowapi's declaration syntax on the `limits` package's asyncio API.

Per user when the request carries a valid token, else per client IP. Every route that is not
`exempt` gets the default limit through the global dependency `enforce_default_limit`; a route
decorated with `limiter.limit(...)` (or a `shared_limit`) also gets its own, checked just before
its body runs, so a request refused earlier (401, 422) never spends it. Counters live in Redis when
REDIS_URL is set and fail over to the process (see rate_limit_storage.py); every counter call is
awaited, so a hung Redis never blocks the event loop.

The request pipeline (request_context.py) adds X-RateLimit-Limit/Remaining/Reset to every limited
response, errors included, from what the last check left in the request state, and Retry-After
to a limited 429 or 503 only (a 200 that said "retry after an hour" would mislead caches and
clients).
The decorator syntax, counter keys and header values are slowapi 0.1.10's: we dropped slowapi
itself, whose counting is synchronous and which we could only drive through its private API.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.types import Scope

from auth import bearer_user
from exceptions import RateLimitExceededError
from rate_limit_storage import build_storage
from settings import Settings

logger = logging.getLogger(__name__)

REGISTER_LIMIT = "10/hour"
LOGIN_LIMIT = "5/minute"
CREATE_TASK_LIMIT = "100/hour"
UPLOAD_LIMIT = "20/hour"
# Per address and, separately, per client IP.
PASSWORD_RESET_LIMIT = "3/hour"
DEFAULT_LIMIT = "1000/hour"

# The values in force, set from settings when the app is built. A callable limit is evaluated on
# every request, so routes decorated at import time still follow the settings.
_active: dict[str, str] = {}
# Where the last check leaves (counter, limit, identifiers) for the response headers.
_STATE_KEY = "rate_limit"
_EXEMPT = "__rate_limit_exempt__"
# The only statuses that may carry Retry-After (RFC 9110 defines it for 503 and 3xx, RFC 6585 for
# 429; we send no 3xx with it).
RETRY_AFTER_STATUSES = frozenset((429, 503))

LimitValue = str | Callable[[], str]
_P = ParamSpec("_P")
_R = TypeVar("_R")
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def active_limit(name: str) -> Callable[[], str]:
    return lambda: _active[name]


@functools.lru_cache(maxsize=64)
def _parse(value: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(value))


def _client_ip(request: Request) -> str:
    """The peer address, or the first untrusted hop of X-Forwarded-For behind a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = request.app.state.trusted_proxies
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for address in [peer, *reversed(hops)]:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if not any(ip in network for network in trusted):
            return address
    return peer


def email_key(email: str) -> str:
    """A per-address counter's key: a digest, so no address is kept in the counter store."""
    return "email:" + hashlib.sha256(email.lower().encode()).hexdigest()[:32]


async def rate_limit_key(request: Request) -> str:
    """`user:<id>` for a request with a valid token, else `ip:<address>`."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    key: str | None = state.get("rate_limit_key")
    if key is None:
        caller = await bearer_user(request)
        key = (
            f"ip:{_client_ip(request)}"
            if isinstance(caller, Exception)
            else f"user:{caller.user_id}"
        )
        state["rate_limit_key"] = key
    return key


class Limiter:
    """The declarations: `@limiter.limit(...)`, `@limiter.shared_limit(..., scope=...)` and
    `exempt`, as slowapi spells them; the counting: `limits.aio` over the app's storage."""

    def __init__(self) -> None:
        self.enabled = True

    def limit(self, value: LimitValue) -> Callable[[_Endpoint], _Endpoint]:
        """This route's own limit, counted per endpoint (`module.function`)."""
        return functools.partial(self._decorate, value, None)

    def shared_limit(self, value: LimitValue, scope: str) -> Callable[[_Endpoint], _Endpoint]:
        """One budget shared by every route decorated with the same `scope`."""
        return functools.partial(self._decorate, value, scope)

    def _decorate(self, value: LimitValue, scope: str | None, endpoint: _Endpoint) -> _Endpoint:
        if "request" not in inspect.signature(endpoint).parameters:
            raise TypeError(f"{endpoint.__qualname__} needs a `request: Request` parameter")
        counted = scope or _scope_of(endpoint)
        return cast(_Endpoint, self._wrap(endpoint, value, counted))

    def _wrap(
        self, endpoint: Callable[_P, Awaitable[_R]], value: LimitValue, scope: str
    ) -> Callable[_P, Awaitable[_R]]:
        @functools.wraps(endpoint)
        async def limited(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if self.enabled:  # FastAPI passes every parameter by keyword
                await self.hit(cast(Request, kwargs["request"]), value, scope)
            return await endpoint(*args, **kwargs)

        return limited

    async def hit(
        self, request: Request, value: LimitValue, scope: str, *, key: str | None = None
    ) -> None:
        """Spend one unit of each limit in `value`, for the caller (user or IP) or for `key`;
        raise RateLimitExceededError when one is out. The smallest-window limit (or the one
        spent) is kept for the response headers."""
        if not self.enabled:
            return
        counter: FixedWindowRateLimiter = request.app.state.rate_limiter
        identifiers = (key or await rate_limit_key(request), scope)
        shown: RateLimitItem | None = None
        for item in _parse(value() if callable(value) else value):
            if shown is None or item < shown:
                shown = item
            if not await counter.hit(item, *identifiers):
                logger.warning("ratelimit %s (%s) exceeded at endpoint: %s", item, *identifiers)
                request.scope["state"][_STATE_KEY] = (counter, item, identifiers)
                raise RateLimitExceededError(str(item))
        request.scope["state"][_STATE_KEY] = (counter, shown, identifiers)


def _scope_of(endpoint: Callable[..., Any]) -> str:
    return f"{endpoint.__module__}.{endpoint.__name__}"


limiter = Limiter()


def exempt(endpoint: _Endpoint) -> _Endpoint:
    """Mark an endpoint as never rate limited (health checks, version)."""
    setattr(endpoint, _EXEMPT, True)
    return endpoint


async def enforce_default_limit(request: Request) -> None:
    """Apply the default limit to every route that is not exempt (a global dependency: it runs
    once routing has picked the route, so the endpoint is known)."""
    if not limiter.enabled:
        return
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if endpoint is None or getattr(endpoint, _EXEMPT, False):
        return
    await limiter.hit(request, _active["default"], _scope_of(endpoint))


async def add_rate_limit_headers(
    scope: Scope, headers: list[tuple[bytes, bytes]], *, status: int
) -> None:
    """Add X-RateLimit-Limit/Remaining/Reset for the limit this request was last checked against,
    read when the response starts (nothing when no limit was checked), and Retry-After on a 429 or
    503 only: the wait until the window resets, or the response's own (a 503's) if later."""
    current = scope.get("state", {}).get(_STATE_KEY)
    if current is None:
        return
    counter, item, identifiers = current
    reset, remaining = await counter.get_window_stats(item, *identifiers)
    headers += [
        (b"x-ratelimit-limit", str(item.amount).encode()),
        (b"x-ratelimit-remaining", str(remaining).encode()),
        (b"x-ratelimit-reset", str(1 + int(reset)).encode()),
    ]
    if status not in RETRY_AFTER_STATUSES:
        return
    reset_in = 1 + int(reset)
    at = next((i for i, h in enumerate(headers) if h[0].lower() == b"retry-after"), None)
    if at is not None:
        own = headers.pop(at)[1]
        if own.isdigit():
            reset_in = max(int(time.time() + int(own)), reset_in)
    headers.append((b"retry-after", str(int(reset_in - time.time())).encode()))


def configure_limiter(settings: Settings) -> None:
    """Point the process-wide declarations at these settings."""
    _active.update(
        register=settings.rate_limit_register or REGISTER_LIMIT,
        login=settings.rate_limit_login or LOGIN_LIMIT,
        create_task=settings.rate_limit_create_task or CREATE_TASK_LIMIT,
        upload=settings.rate_limit_upload or UPLOAD_LIMIT,
        password_reset=settings.rate_limit_password_reset or PASSWORD_RESET_LIMIT,
        default=settings.rate_limit_default or DEFAULT_LIMIT,
    )
    limiter.enabled = settings.rate_limit_enabled


def install_rate_limiting(app: FastAPI, settings: Settings) -> None:
    """Configure the limiter for this app's settings and give the app its counters (no I/O:
    the lifespan closes them)."""
    configure_limiter(settings)
    app.state.rate_limiter = FixedWindowRateLimiter(build_storage(settings))
    app.state.trusted_proxies = [
        ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies
    ]
