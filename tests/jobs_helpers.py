"""Waiting for the job engine in tests: `settled(app)` returns once the relay has read every
committed event and no job derived from them (or deferred by a route) is waiting or running."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import procrastinate
from fastapi import FastAPI
from sqlalchemy import text

from jobs import relay

_PENDING = (
    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
    "AND NOT task_name = ANY(:periodic)"
)
_LAST = "SELECT txid, id FROM events ORDER BY txid DESC, id DESC LIMIT 1"
_RELAY = "SELECT txid, event_id FROM event_consumers WHERE name = 'relay'"


def app_of(target: FastAPI | httpx.AsyncClient) -> FastAPI:
    if isinstance(target, FastAPI):
        return target
    app = target._transport.app  # type: ignore[attr-defined]  # the ASGITransport's app
    assert isinstance(app, FastAPI)
    return app


def _periodic(jobs: procrastinate.App) -> list[str]:
    return [name for name, _ in jobs.periodic_registry.periodic_tasks]


async def _pending(app: FastAPI) -> int:
    jobs: procrastinate.App = app.state.jobs
    periodic = _periodic(jobs)
    if not hasattr(jobs.connector, "jobs"):  # PostgreSQL: the jobs table
        async with app.state.engine.connect() as connection:
            found = await connection.execute(text(_PENDING), {"periodic": periodic})
            return int(found.scalar_one())
    table: dict[int, Any] = jobs.connector.jobs
    return sum(
        1
        for job in table.values()
        if job["status"] in ("todo", "doing") and job["task_name"] not in periodic
    )


async def _relay_behind(app: FastAPI) -> bool:
    async with app.state.engine.connect() as connection:
        last = (await connection.execute(text(_LAST))).first()
        at = (await connection.execute(text(_RELAY))).first()
    return last is not None and (at is None or tuple(at) < tuple(last))


_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_BEHIND_HORIZON = f"SELECT count(*) FROM events WHERE txid >= {_HORIZON}"


async def readable(target: FastAPI | httpx.AsyncClient, seconds: float = 10.0) -> None:
    """PostgreSQL: wait until every committed event is below the feed's horizon (no transaction
    older than its writer still runs anywhere in the cluster: the relay's, a job's, another
    test's); from then on the change feed hands it out. SQLite: at once."""
    app = app_of(target)
    if app.state.engine.dialect.name != "postgresql":
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        async with app.state.engine.connect() as connection:
            behind = (await connection.execute(text(_BEHIND_HORIZON))).scalar_one()
        if not behind:
            return
        assert loop.time() < deadline, f"{behind} events still above the horizon"
        await asyncio.sleep(0.02)


async def settled(target: FastAPI | httpx.AsyncClient, seconds: float = 30.0) -> None:
    """Wait until the app's relay has caught up and its jobs are done (fail after `seconds`)."""
    app = app_of(target)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        behind = await _relay_behind(app) or app.state.jobs in relay._WAITING
        pending = await _pending(app)
        if not behind and not pending:
            return
        assert loop.time() < deadline, f"jobs not settled: relay behind={behind} {pending=}"
        await asyncio.sleep(0.05)
