"""The job engine inside the API process: open for the routes that defer jobs, and (by default)
a worker of its own, which the embedded SQLite setup relies on (jobs/engine.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import procrastinate

from jobs import relay
from jobs.engine import API_SHUTDOWN_GRACE_SECONDS, Resources, build_job_app, run_worker

logger = logging.getLogger(__name__)


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
