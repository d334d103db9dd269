"""Prometheus metrics: requests per route template, latency, in-flight, DB pool, cache results.

`GET /metrics` serves them in the text exposition format; it is never rate limited. Metrics are
per process: with several workers, scrape each one (or run one worker per container, as the
Docker image does by default).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response
from starlette.types import Scope

REQUESTS = Counter("http_requests_total", "HTTP requests served", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request start to response end",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight", "Requests being handled right now", ["method", "route"]
)
CACHE_RESULTS = Counter("cache_requests_total", "Stats cache lookups", ["result"])

UNMATCHED = "unmatched"
# The scope key under which track_in_flight leaves the gauge for observe_request to lower.
_IN_FLIGHT_KEY = "metrics.in_flight"
# Label children, looked up once: `labels()` takes a lock and builds a tuple per call.
_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
_gauges: dict[tuple[str, str], Gauge] = {}


def _request_metrics(labels: tuple[str, str, str]) -> tuple[Counter, Histogram]:
    children = _children.get(labels)
    if children is None:
        children = _children[labels] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    return children


def route_template(scope: Scope) -> str:
    """The matched route's template (`/tasks/{task_id}`), never the raw path: bounded labels."""
    route = scope.get("route")
    # path_format drops converters: /tasks/{task_id:int} is reported as /tasks/{task_id}.
    path = getattr(route, "path_format", None)
    return path if isinstance(path, str) else UNMATCHED


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Count a finished request under its route template and lower its in-flight gauge."""
    gauge = scope.pop(_IN_FLIGHT_KEY, None)
    if gauge is not None:
        gauge.dec()
    requests, latency = _request_metrics((scope["method"], route_template(scope), str(status)))
    requests.inc()
    latency.observe(seconds)


async def track_in_flight(request: Request) -> None:
    """A global dependency: it runs once routing has picked the route, so the label is known.
    observe_request lowers the gauge when the request ends (a plain dependency is cheaper
    than a `yield` one, which FastAPI wraps in an exit stack)."""
    labels = (request.method, route_template(request.scope))
    gauge = _gauges.get(labels)
    if gauge is None:
        gauge = _gauges[labels] = IN_FLIGHT.labels(*labels)
    gauge.inc()
    request.scope[_IN_FLIGHT_KEY] = gauge


class PoolCollector(Collector):
    """Reads the SQLAlchemy pools of the running app(s) at scrape time."""

    def __init__(self) -> None:
        self.engines: list[AsyncEngine] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, help_text, reader in (
            ("db_pool_size", "Configured pool size", "size"),
            ("db_pool_checked_out", "Connections in use", "checkedout"),
            ("db_pool_checked_in", "Idle connections in the pool", "checkedin"),
            ("db_pool_overflow", "Connections beyond the pool size", "overflow"),
        ):
            readings = [getattr(engine.sync_engine.pool, reader, None) for engine in self.engines]
            values = [float(read()) for read in readings if callable(read)]
            yield GaugeMetricFamily(name, help_text, value=sum(values))


_POOLS = PoolCollector()
REGISTRY.register(_POOLS)


def register_pool(engine: AsyncEngine) -> None:
    _POOLS.engines.append(engine)


def unregister_pool(engine: AsyncEngine) -> None:
    _POOLS.engines.remove(engine)


def metrics_response() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
