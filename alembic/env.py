"""Alembic environment: async engine from the app's settings; batch mode so SQLite can ALTER."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import warnings
from logging.config import fileConfig

from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SAWarning
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import Index, SchemaItem

import event_tables  # noqa: F401  (its tables join Base.metadata)
from alembic import context
from db_config import normalize_database_url
from db_models import Base
from logging_config import log_handler
from settings import ConfigurationError, get_settings

# SQLite's reflection cannot return expression indexes (uq_users_*_lower, migration 0008), so a
# batch rebuild that reflects `users` (a foreign key to it) warns on stderr, outside the log
# format. They are declared in the models and created by the migrations: nothing is lost.
warnings.filterwarnings(
    "ignore", message="Skipped unsupported reflection of expression-based index", category=SAWarning
)

config = context.config

target_metadata = Base.metadata
# Seconds to wait for PostgreSQL before calling it unreachable (asyncpg's own default is 60).
CONNECT_TIMEOUT = 10


def _configure_logging() -> None:
    """alembic.ini's levels, with the app's handler: text or JSON lines, ISO 8601 times."""
    if config.config_file_name is None or not config.attributes.get("configure_logger", True):
        return
    fileConfig(config.config_file_name, disable_existing_loggers=False)
    logging.getLogger().handlers[:] = [log_handler(get_settings().log_format)]


def _database_url() -> str:
    # Tests hand a URL in directly; everyone else gets DATABASE_URL through the settings.
    url = config.attributes.get("database_url") or get_settings().database_url
    return normalize_database_url(url).render_as_string(hide_password=False)


def _include_object(
    item: SchemaItem,
    name: str | None,
    type_: str,
    reflected: bool,
    compare_to: SchemaItem | None,
) -> bool:
    """Compare an index declared for one dialect (`ddl_if`: the trigram indexes) on it only;
    procrastinate's tables (migration 0012) are its own, not our models'."""
    if type_ == "table" and reflected and (name or "").startswith("procrastinate_"):
        return False
    if isinstance(item, Index) and not reflected:
        rule = item._ddl_if  # SQLAlchemy keeps ddl_if()'s rule here, with no public accessor
        dialect = context.get_context().dialect
        if rule is not None and rule.dialect is not None and dialect is not None:
            wanted = (rule.dialect,) if isinstance(rule.dialect, str) else rule.dialect
            return dialect.name in wanted
    return True


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=_include_object,
        **kwargs,  # type: ignore[arg-type]  # url and literal_binds for offline mode
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _unreachable(url: str, exc: Exception) -> str:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] or type(exc).__name__
    parsed = make_url(url)
    shown = parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    return (
        f"DATABASE_URL: cannot connect to {shown} ({reason}); "
        "start the database or fix DATABASE_URL (environment or .env)"
    )


async def run_migrations_online() -> None:
    url = _database_url()
    connect_args = {"timeout": CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    threads = set(threading.enumerate())
    try:
        try:
            connection = await engine.connect()
        except (OSError, TimeoutError, DBAPIError) as exc:
            # A thread the driver started for this attempt (aiosqlite's) may still be stopping;
            # let it finish while the loop runs, or it reports into a closed loop at exit.
            for thread in set(threading.enumerate()) - threads:
                await asyncio.to_thread(thread.join, 5)
            raise ConfigurationError(_unreachable(url, exc)) from None
        try:
            await connection.run_sync(_run_sync)
        finally:
            await connection.close()
    finally:
        await engine.dispose()


try:
    _configure_logging()
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        asyncio.run(run_migrations_online())
except ConfigurationError as exc:
    sys.exit(str(exc))  # `alembic upgrade head` (make run's first step) ends on this one line
