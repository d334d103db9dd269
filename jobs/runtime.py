"""The job engine at run time: the procrastinate app with every job of jobs/work.py, and the
API process's use of it: open for the routes that defer jobs, and (by default) a worker of its
own, which the embedded SQLite setup relies on (jobs/engine.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import procrastinate
from procrastinate.testing import InMemoryConnector

import jobs.work  # noqa: F401  # its decorators fill DECLARED with every job
from db_config import normalize_database_url
from jobs import relay
from jobs.engine import (
    API_SHUTDOWN_GRACE_SECONDS,
    DECLARED,
    Resources,
    is_durable,
    run_worker,
)
from settings import Settings

logger = logging.getLogger(__name__)


def build_job_app(settings: Settings) -> procrastinate.App:
    """The procrastinate app for these settings, with every job of jobs/work.py registered."""
    connector: Any
    if is_durable(settings):
        url = normalize_database_url(settings.database_url).set(drivername="postgresql")
        connector = procrastinate.PsycopgConnector(
            conninfo=url.render_as_string(hide_password=False),
            # No connection is opened up front: the API starts (and answers 503) while the
            # database is down, as without jobs.
            min_size=0,
            max_size=max(2, settings.job_concurrency),
        )
    else:
        connector = InMemoryConnector()
    app = procrastinate.App(connector=connector)
    for declared in DECLARED:
        task = app.task(**declared.options)(declared.function)
        if declared.cron is not None:
            app.periodic(cron=declared.cron)(task)
    return app


async def _supervised(app: procrastinate.App, found: Resources) -> None:
    """The API's in-process worker, started again whenever it stops on an error (the database
    went away): jobs wait in the database meanwhile."""
    while True:
        try:
            await run_worker(
                app, found, name="api", signals=False, grace=API_SHUTDOWN_GRACE_SECONDS
            )
            return
        except Exception as exc:
            logger.error("job worker stopped error=%s; restarting in 5 s", type(exc).__name__)
            await asyncio.sleep(5)


@asynccontextmanager
async def jobs_for_api(found: Resources) -> AsyncIterator[procrastinate.App]:
    """The API's job app, open for deferring; with JOB_WORKER_IN_PROCESS (the default) a worker
    runs inside the API too, stopped (running jobs given their grace) at shutdown."""
    app = build_job_app(found.settings)
    async with app.open_async():
        worker = None
        if found.settings.job_worker_in_process:
            worker = asyncio.create_task(_supervised(app, found))
        try:
            yield app
        finally:
            if worker is not None:
                worker.cancel()
                # Bounded: with the database gone, the worker's own goodbye (unregistering)
                # would wait for a connection; what it abandons is rerun (stalled jobs).
                with suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(worker, API_SHUTDOWN_GRACE_SECONDS + 1)
            relay.release(app)
