"""The application: built by `create_app()`, served as `main:app`."""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import Depends, FastAPI

from db_config import build_engine, build_sessionmaker
from docs_ui import install_docs
from exceptions import register_exception_handlers
from jobs.engine import Resources
from jobs.runtime import jobs_for_api
from logging_config import configure_logging
from metrics import register_pool, track_in_flight, unregister_pool
from rate_limit_config import enforce_default_limit, install_rate_limiting
from redis_config import build_cache
from request_context import RequestContextMiddleware
from routers import (
    auth,
    comments,
    events,
    files,
    health,
    notifications,
    people,
    shares,
    tasks,
    users,
    webhooks,
)
from services import api_tokens
from services import tasks as task_service
from services.webhook_delivery import new_client
from settings import ConfigurationError, Settings, get_settings, resolve_secret_key
from storage import build_storage

DESCRIPTION = """
A task manager REST API. Register, then log in with **Authorize** (username and password) to try
every endpoint. Errors always have the body `{"error": "...", "message": "..."}`.
"""


# Young objects are collected every 10 000 net allocations, not 700: a request's objects are
# nearly all freed by reference counting, so collections found little, at a measured 11-15 % of
# a worker's CPU (3 % with the start-up heap frozen, under 0.1 % with both).
GC_THRESHOLDS = (10_000, 20, 100)


@contextmanager
def _tuned_gc(enabled: bool) -> Iterator[None]:
    """Freeze what start-up built (modules, the app, the pools) out of the cyclic collector's
    passes, and collect young objects less often; undone at shutdown (tests build many apps)."""
    if not enabled:
        yield
        return
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


# Each request is matched against the routes in this order: the busiest first, the account
# routes last (18 routes in front of the task routes cost GET /tasks/{id} ~30 us).
_ROUTERS = (
    health.router,
    auth.router,
    tasks.router,
    shares.router,
    files.task_files_router,
    files.files_router,
    comments.task_comments_router,
    comments.comments_router,
    events.changes_router,
    events.activity_router,
    webhooks.router,
    people.users_router,
    people.notifications_router,
    auth.sessions_router,
    users.router,
    notifications.router,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients are built here, not at import, so tests can build apps with other settings.
        configure_logging(settings)
        app.state.secret_key = resolve_secret_key(settings)
        app.state.engine = build_engine(settings)
        app.state.sessionmaker = build_sessionmaker(app.state.engine)
        app.state.tasks = task_service.store_for(app.state.engine)
        app.state.token_lookup = functools.partial(api_tokens.lookup, app.state.engine)
        app.state.cache = build_cache(settings)
        app.state.storage = build_storage(settings)
        register_pool(app.state.engine)
        http = new_client(settings)
        resources = Resources(
            settings, app.state.engine, app.state.sessionmaker, app.state.storage, http
        )
        try:
            async with jobs_for_api(resources) as app.state.jobs:
                with _tuned_gc(settings.gc_tuning):
                    yield
        finally:
            await http.aclose()
            unregister_pool(app.state.engine)
            await app.state.rate_limiter.storage.close()
            await app.state.storage.close()
            await app.state.cache.close()
            await app.state.engine.dispose()

    app = FastAPI(
        title="Task Manager API",
        version=settings.app_version,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_docs below
        redoc_url=None,
        openapi_url="/openapi.json" if settings.serves_docs else None,
        dependencies=[Depends(enforce_default_limit), Depends(track_in_flight)],
    )
    app.state.settings = settings
    register_exception_handlers(app)
    install_rate_limiting(app, settings)
    # The one middleware (docs/ARCHITECTURE.md, "Request pipeline"): request id, body limit,
    # rate-limit headers, metrics, access log, last-resort 500. Idempotency is a route option.
    app.add_middleware(
        RequestContextMiddleware,
        max_body=settings.max_request_body,
        max_upload=settings.max_upload_size,
    )
    for router in _ROUTERS:
        app.include_router(router)
    if settings.serves_docs:  # DOCS_ENABLED; by default not in production
        install_docs(app)
    return app


try:
    app = create_app()
except ConfigurationError as exc:
    sys.exit(str(exc))  # `uvicorn main:app` then ends on this one line, not a traceback
