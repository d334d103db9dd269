"""Rate limits, enforced by slowapi, counted in Redis when REDIS_URL is set.

Per user when the request carries a valid token, else per client IP. Named routes get their own
limit through `limiter.limit(...)`; every other route gets the default limit through the global
dependency `enforce_default_limit`. Three slowapi weaknesses are designed around here:

* its ASGI middleware finds the endpoint by scanning `app.routes`, which under FastAPI's nested
  included routers holds no endpoints: every route looked exempt and the default limit silently
  never applied. The dependency runs after routing, where the endpoint is known.

* its Redis fallback drops every route limit while storage is down, and its header code turns a
  storage error into a 500 after the endpoint has run. `FailoverStorage` therefore never lets a
  storage error reach slowapi: each call falls back to in-process counters, so limits still hold
  (per instance) during a Redis outage, and Redis is tried again after REDIS_RETRY_INTERVAL.
* its decorator injects headers into the endpoint's `response` parameter, so every decorated
  endpoint takes `request: Request` and `response: Response`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.responses import Response
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import _should_exempt
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import token_user_id
from circuit_breaker import CircuitBreaker
from exceptions import InvalidTokenError, error_response
from redis_config import redis_timeouts
from settings import Settings

logger = logging.getLogger(__name__)

REGISTER_LIMIT = "10/hour"
LOGIN_LIMIT = "5/minute"
CREATE_TASK_LIMIT = "100/hour"
UPLOAD_LIMIT = "20/hour"
DEFAULT_LIMIT = "1000/hour"

# The values in force, set from settings when the app is built. slowapi evaluates a callable limit
# on every request, so routes decorated at import time still follow the settings.
_active: dict[str, str] = {}


def active_limit(name: str) -> Callable[[], str]:
    return lambda: _active[name]


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


def rate_limit_key(request: Request) -> str:
    """`user:<id>` for a request with a valid token, else `ip:<address>`."""
    cached: str | None = getattr(request.state, "rate_limit_key", None)
    if cached is not None:
        return cached
    key = f"ip:{_client_ip(request)}"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        with contextlib.suppress(InvalidTokenError):
            key = f"user:{token_user_id(token, secret=request.app.state.secret_key)}"
    request.state.rate_limit_key = key
    return key


limiter = Limiter(
    key_func=rate_limit_key,
    key_style="endpoint",
    default_limits=[active_limit("default")],
    headers_enabled=True,
    storage_uri="memory://",
    strategy="fixed-window",
)


_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def exempt(endpoint: _Endpoint) -> _Endpoint:
    """Mark an endpoint as never rate limited (health checks, version)."""
    return cast(_Endpoint, limiter.exempt(endpoint))  # type: ignore[no-untyped-call]  # slowapi leaves it untyped


class FailoverStorage(Storage):
    """Redis counters with a per-call fallback to in-process counters."""

    STORAGE_SCHEME = None

    def __init__(self, primary: Storage | None, *, retry_interval: float) -> None:
        super().__init__()
        self._primary = primary
        self._fallback = MemoryStorage()
        self._breaker = CircuitBreaker("redis rate-limit storage", retry_interval)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return Exception

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._primary is not None and self._breaker.allows():
            try:
                result = getattr(self._primary, method)(*args, **kwargs)
            except Exception as exc:  # any storage failure means: count locally for now
                self._breaker.failed(exc)
            else:
                self._breaker.succeeded()
                return result
        return getattr(self._fallback, method)(*args, **kwargs)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(self._call("incr", key, expiry, amount=amount))

    def get(self, key: str) -> int:
        return int(self._call("get", key))

    def get_expiry(self, key: str) -> float:
        # Whole seconds, so X-RateLimit-Reset is an integer epoch as clients expect.
        return math.ceil(float(self._call("get_expiry", key)))

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        self._fallback.reset()
        return None

    def clear(self, key: str) -> None:
        self._call("clear", key)


def _build_storage(settings: Settings) -> FailoverStorage:
    primary = None
    if settings.redis_url:
        primary = RedisStorage(
            settings.redis_url,
            key_prefix=f"{settings.redis_key_prefix}limits",
            **{"retry": Retry(NoBackoff(), 0), **redis_timeouts(settings)},
        )
    return FailoverStorage(primary, retry_interval=settings.redis_retry_interval)


async def _rate_limit_exceeded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitExceeded)
    return error_response(
        429, "Too Many Requests", f"Rate limit exceeded: {exc.detail}. Try again later."
    )


async def enforce_default_limit(request: Request) -> None:
    """Apply the default limit to every route that has no limit of its own and is not exempt."""
    if not limiter.enabled:
        return
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if endpoint is None or _should_exempt(limiter, endpoint):
        return
    # The same check slowapi's middleware makes (private API of the pinned slowapi 0.1.10).
    limiter._check_request_limit(request, endpoint, True)


class RateLimitHeadersMiddleware:
    """Adds X-RateLimit-* to every limited response, errors included (slowapi: successes only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not limiter.enabled:  # off: no wrapper on every send
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start" and limiter.enabled:
                current = scope.get("state", {}).get("view_rate_limit")
                headers = MutableHeaders(scope=message)
                if current is not None and "x-ratelimit-limit" not in headers:
                    limiter._inject_asgi_headers(headers, current)
            await send(message)

        await self.app(scope, receive, send_with_limits)


def configure_limiter(settings: Settings) -> None:
    """Point the process-wide limiter at these settings and a fresh counter storage."""
    _active.update(
        register=settings.rate_limit_register or REGISTER_LIMIT,
        login=settings.rate_limit_login or LOGIN_LIMIT,
        create_task=settings.rate_limit_create_task or CREATE_TASK_LIMIT,
        upload=settings.rate_limit_upload or UPLOAD_LIMIT,
        default=settings.rate_limit_default or DEFAULT_LIMIT,
    )
    limiter.enabled = settings.rate_limit_enabled
    storage = _build_storage(settings)
    # slowapi 0.1.10 takes its storage only as a URI; swap in the failover storage directly.
    limiter._storage = storage
    limiter._limiter = FixedWindowRateLimiter(storage)


def install_rate_limiting(app: FastAPI, settings: Settings) -> None:
    """Configure the limiter for this app's settings and add the 429 handler."""
    configure_limiter(settings)
    app.state.limiter = limiter
    app.state.trusted_proxies = [
        ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies
    ]
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded)
    app.add_middleware(RateLimitHeadersMiddleware)
