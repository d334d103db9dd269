"""Maintenance commands, configured by the same environment as the API.

    python manage.py worker [--name NAME]
    python manage.py reconcile-storage [--grace-seconds N] [--dry-run]
    python manage.py purge-events

`worker` runs jobs (jobs/): mail, blob cleanup, webhook deliveries, and the periodic ones (the
relay, the retention purge, storage reconciliation). Start as many as you like, on as many
machines: on PostgreSQL they share the jobs table. It stops on SIGTERM or SIGINT after giving
running jobs a few seconds; a job it abandons is run again by another worker. On SQLite jobs
live in the API process, whose own worker runs them (JOB_WORKER_IN_PROCESS).

`reconcile-storage` deletes stored blobs that no file row references and that are older than
the grace period (STORAGE_ORPHAN_GRACE_SECONDS, default one hour), plus uploads a crash left
half-written. It never deletes a referenced blob, and a second run finds nothing to do. Run it
from cron or a scheduled job; it is safe while the API is serving. `--dry-run` deletes nothing
and logs each half-written upload it would purge (`incomplete` in the summary).

`purge-events` deletes the events older than EVENT_RETENTION_DAYS (the change feed and the
activity log keep no more). Workers do it every hour; the command is for a one-off run. Its
last line is `{"purged": N}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from dataclasses import asdict
from datetime import timedelta

from background_tasks import ReconcileReport, reconcile_storage
from db_config import build_engine, build_sessionmaker
from jobs.engine import Resources, is_durable, run_worker
from jobs.runtime import build_job_app
from logging_config import configure_logging
from services.feed import purge_events
from services.webhook_delivery import new_client
from settings import ConfigurationError, Settings, get_settings
from storage import build_storage


async def reconcile(
    settings: Settings, *, grace_seconds: int | None = None, dry_run: bool = False
) -> ReconcileReport:
    engine = build_engine(settings)
    storage = build_storage(settings)
    grace = settings.storage_orphan_grace_seconds if grace_seconds is None else grace_seconds
    try:
        return await reconcile_storage(
            build_sessionmaker(engine),
            storage,
            grace=timedelta(seconds=grace),
            dry_run=dry_run,
        )
    finally:
        await storage.close()
        await engine.dispose()


async def work(settings: Settings, name: str) -> int:
    """Run jobs until SIGTERM/SIGINT. On SQLite there is nothing to take: the jobs are in the
    API process (exit 2 with a message)."""
    if not is_durable(settings):
        sys.stderr.write(
            "worker: jobs run inside the API on SQLite; set DATABASE_URL to PostgreSQL\n"
        )
        return 2
    engine = build_engine(settings)
    storage = build_storage(settings)
    http = new_client(settings)
    found = Resources(settings, engine, build_sessionmaker(engine), storage, http)
    try:
        async with build_job_app(settings).open_async() as app:
            await run_worker(app, found, name=name, signals=True)
    finally:
        await http.aclose()
        await storage.close()
        await engine.dispose()
    return 0


async def purge(settings: Settings) -> int:
    engine = build_engine(settings)
    try:
        return await purge_events(engine, settings)
    finally:
        await engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python manage.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "reconcile-storage", help="delete stored blobs that no file row references"
    )
    command.add_argument(
        "--grace-seconds",
        type=int,
        default=None,
        help="only delete blobs at least this old (default: STORAGE_ORPHAN_GRACE_SECONDS)",
    )
    command.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    commands.add_parser("purge-events", help="delete events older than EVENT_RETENTION_DAYS")
    worker = commands.add_parser("worker", help="run jobs until SIGTERM (PostgreSQL)")
    worker.add_argument("--name", default=socket.gethostname(), help="shown in the logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "grace_seconds", None) is not None and args.grace_seconds < 0:
        parser.error("--grace-seconds must be 0 or more")
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        parser.exit(1, f"{exc}\n")
    configure_logging(settings)
    if args.command == "worker":
        return asyncio.run(work(settings, args.name))
    if args.command == "purge-events":
        sys.stdout.write(json.dumps({"purged": asyncio.run(purge(settings))}) + "\n")
        return 0
    report = asyncio.run(
        reconcile(settings, grace_seconds=args.grace_seconds, dry_run=args.dry_run)
    )
    # Logs go to stdout too; the summary is always the last line.
    sys.stdout.write(json.dumps(asdict(report)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
