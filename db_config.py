"""Database engine and sessions: built at start-up from settings, never at import."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import ClauseElement, Executable, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from settings import Settings

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
# A connection that sat idle this long is pinged before use (PostgreSQL may have restarted or a
# proxy dropped it); a busy pool never pays that round trip. A connection that breaks anyway is
# reported by asyncpg as a disconnect, and SQLAlchemy then discards every pooled connection
# older than the failure, so at most the request that met it fails.
IDLE_PING_SECONDS = 5.0
# Execution option of the read-only engine (see read_only): no BEGIN IMMEDIATE on SQLite.
_READ_ONLY = "task_manager_read_only"
_CHECKED_IN_AT = "checked_in_at"


def normalize_database_url(raw: str) -> URL:
    """Accept the plain `postgresql://` / `sqlite://` forms and pick the asyncio driver."""
    url = make_url(raw.replace("postgres://", "postgresql://", 1))
    backend = url.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use PostgreSQL or SQLite")
    url = url.set(drivername=_ASYNC_DRIVERS[backend])
    if backend == "postgresql" and "sslmode" in url.query:
        # libpq spells it sslmode; asyncpg takes ssl with the same values.
        query = dict(url.query)
        query["ssl"] = query.pop("sslmode")
        url = url.set(query=query)
    return url


def _sqlite_on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the driver, open transactions, so "begin" below can make them
    # IMMEDIATE: SQLite then queues concurrent writers on busy_timeout instead of failing
    # a read-then-write transaction with "database is locked".
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Reads run in autocommit: in WAL mode each SELECT sees one consistent snapshot, and it
    # need not queue behind writers for the write lock.
    if connection.get_execution_options().get(_READ_ONLY):
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _note_checkin(_: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: Any, record: ConnectionPoolEntry, _: PoolProxiedConnection
) -> None:
    checked_in_at = record.info.get(_CHECKED_IN_AT)
    if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_SECONDS:
        return  # fresh from connect(), or in steady use
    try:
        dbapi_connection.ping()
    except Exception as exc:  # the pool replaces it with a new connection
        raise DisconnectionError("idle connection failed its ping") from exc


def build_engine(settings: Settings) -> AsyncEngine:
    url = normalize_database_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, echo=settings.db_echo)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        echo=settings.db_echo,
        # Up to DB_POOL_SIZE + DB_MAX_OVERFLOW connections, all kept once opened: a QueuePool
        # closes each overflow connection at check-in, so a load just above DB_POOL_SIZE kept
        # connecting and disconnecting (and /health queued behind the new connections).
        pool_size=settings.db_pool_size + settings.db_max_overflow,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "server_settings": {"application_name": "task-manager-api"},
        },
    )
    event.listen(engine.sync_engine.pool, "checkin", _note_checkin)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for reads that need no transaction: autocommit, so neither BEGIN nor
    ROLLBACK costs a round trip (PostgreSQL), nor BEGIN IMMEDIATE a write lock (SQLite)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_READ_ONLY: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT", **{_READ_ONLY: True})


class DriverQuery:
    """A statement compiled once for asyncpg, run on the driver connection of a pooled
    connection: the hot reads skip SQLAlchemy's per-execution work (execution context, greenlet
    hop, result wrapping) but keep its pool, idle ping and connection lifecycle.

    Errors keep SQLAlchemy's handling too: when the driver call fails, the statement runs again
    through SQLAlchemy on the same connection, which either answers (a transient failure) or
    fails as every other statement does: translated to a DBAPIError, and a dead connection
    invalidated along with the pool's older ones (so the caller sees the usual 503). Each such
    retry is counted in `fallbacks` (the tests check that the hot reads never need one)."""

    fallbacks = 0

    def __init__(self, statement: Executable, engine: AsyncEngine) -> None:
        compiled = cast(ClauseElement, statement).compile(dialect=engine.dialect)
        self.statement = statement
        self.sql = str(compiled)
        self.names = tuple(getattr(compiled, "positiontup", None) or ())
        # Values the statement carries itself (literals SQLAlchemy bound, e.g. 'low' in a FILTER).
        self.defaults = {name: compiled.params[name] for name in self.names}

    async def fetch(self, engine: AsyncEngine, params: dict[str, Any]) -> list[Mapping[str, Any]]:
        """Every row, as mappings of column name to value."""
        values = [params[name] if name in params else self.defaults[name] for name in self.names]
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None  # a checked-out connection always has one
            try:
                records = await driver.fetch(self.sql, *values)
            except Exception:
                DriverQuery.fallbacks += 1
                result = await connection.execute(self.statement, params)
                return [dict(row) for row in result.mappings()]
            return [dict(record.items()) for record in records]


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
