"""The job engine: procrastinate, on the API's own database.

PostgreSQL: jobs are rows of procrastinate's tables (migration 0012) in the same database, so a
deferred job survives any restart, and every `python manage.py worker` process on any machine
takes jobs from them (LISTEN/NOTIFY wakes them; locks keep one relay at a time). SQLite (the
embedded default): jobs live in the API process's memory (procrastinate's in-memory connector)
and its worker runs inside the API; what must not be lost is re-derived from the committed event
record by the relay (jobs/relay.py), whose position only passes a batch once its jobs finished.

Jobs get their clients (settings, database, storage) from `resources(context)`; each worker
process builds one `Resources` and hands it to procrastinate as the jobs' context.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import procrastinate
from procrastinate import BaseRetryStrategy, JobContext, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db_config import normalize_database_url
from settings import Settings
from storage import Storage

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[None]])

NAMESPACE = "tm"
# A stopping worker gives running jobs this long to finish; what it abandons is retried
# (stalled jobs, jobs/work.py) or re-derived (the relay). A worker process gets 5 s (under
# Docker's 10 s stop timeout); the API's own worker 2 s, within uvicorn's graceful shutdown.
SHUTDOWN_GRACE_SECONDS = 5.0
API_SHUTDOWN_GRACE_SECONDS = 2.0
# Jobs that raise anything but RetryLater: this many attempts, 2, 4, 8, 16 s apart.
DEFAULT_ATTEMPTS = 5


@dataclass(frozen=True)
class Resources:
    """What jobs use: built once per worker process. `http` sends webhook deliveries (one
    client per process: building one costs ~17 ms of CPU, loading the CA bundle)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    http: httpx.AsyncClient


def resources(context: JobContext) -> Resources:
    found = context.additional_context["resources"]
    assert isinstance(found, Resources)
    return found


class RetryLater(Exception):
    """Raised by a job that failed in a way worth retrying, after `seconds` (the job computes
    its own backoff: mail from the SMTP_* settings, webhooks from their schedule)."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class Backoff(BaseRetryStrategy):
    """RetryLater: when the job says. Anything else (a bug, an outage): exponential backoff,
    DEFAULT_ATTEMPTS attempts in all."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RetryLater):
            return RetryDecision(retry_in={"seconds": max(1, round(exception.seconds))})
        if job.attempts + 1 >= DEFAULT_ATTEMPTS:
            return None
        return RetryDecision(retry_in={"seconds": 2 ** (job.attempts + 1)})


@dataclass(frozen=True)
class Declared:
    function: Callable[..., Awaitable[None]]
    options: dict[str, Any]
    cron: str | None


DECLARED: list[Declared] = []  # every job of jobs/work.py, in order


def job(name: str, *, cron: str | None = None, **options: Any) -> Callable[[F], F]:
    """Declare a job (jobs/work.py): `name`, procrastinate task options, and with `cron` when
    it runs periodically (a sixth field: seconds). Each app built registers every job."""

    def keep(function: F) -> F:
        settings = {"name": f"{NAMESPACE}:{name}", "pass_context": True, "retry": Backoff()}
        DECLARED.append(Declared(function, settings | options, cron))
        return function

    return keep


def is_durable(settings: Settings) -> bool:
    """Whether jobs are stored in the database (PostgreSQL) rather than in process memory."""
    return normalize_database_url(settings.database_url).get_backend_name() == "postgresql"


async def defer(
    app: procrastinate.App,
    job: str,
    lock: str | None = None,
    delay: float | None = None,
    **args: Any,
) -> None:
    """Queue `job` (its name in jobs/work.py) with `args`, to run now or after `delay` seconds;
    with `lock`, not if one with that lock is already waiting."""
    when = None if delay is None else {"seconds": max(1, round(delay))}
    deferrer = app.configure_task(f"{NAMESPACE}:{job}", queueing_lock=lock, schedule_in=when)
    with suppress(AlreadyEnqueued):
        await deferrer.defer_async(**args)


async def run_worker(
    app: procrastinate.App,
    found: Resources,
    *,
    name: str,
    signals: bool,
    grace: float = SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Take jobs until cancelled (or, with `signals`, until SIGINT/SIGTERM); running jobs get
    `grace` seconds to finish."""
    await app.run_worker_async(
        name=name,
        concurrency=found.settings.job_concurrency,
        additional_context={"resources": found},
        delete_jobs="successful",
        install_signal_handlers=signals,
        shutdown_graceful_timeout=grace,
        listen_notify=is_durable(found.settings),
        fetch_job_polling_interval=1.0,
        update_heartbeat_interval=found.settings.job_stalled_seconds / 4,
        stalled_worker_timeout=found.settings.job_stalled_seconds,
    )
