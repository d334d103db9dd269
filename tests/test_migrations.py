"""Alembic migrations upgrade, downgrade and upgrade again cleanly, and match the models."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.config import Config
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from db_config import normalize_database_url
from tests.conftest import ROOT, migrate

APP_TABLES = {"users", "tasks", "task_tags", "task_files", "idempotency_keys"}


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(normalize_database_url(url))
        async with engine.connect() as connection:

            def names(sync: Connection) -> set[str]:
                return set(inspect(sync).get_table_names())

            tables = await connection.run_sync(names)
        await engine.dispose()
        return tables - {"alembic_version"}

    return asyncio.run(read())


def _admin(url: str, sql: str) -> None:
    async def run() -> None:
        target = normalize_database_url(url)
        connection = await asyncpg.connect(
            user=target.username, password=target.password, host=target.host,
            port=target.port or 5432, database="postgres",
        )  # fmt: skip
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A brand-new database of the kind the suite runs on."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"tm_migrations_{uuid.uuid4().hex[:8]}"
    _admin(base, f'CREATE DATABASE "{name}"')
    try:
        yield normalize_database_url(base).set(database=name).render_as_string(False)
    finally:
        _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_upgrade_downgrade_upgrade(empty_database: str) -> None:
    migrate(empty_database)
    assert _tables(empty_database) >= APP_TABLES
    migrate(empty_database, "base", down=True)
    assert _tables(empty_database) == set()
    migrate(empty_database)
    assert _tables(empty_database) >= APP_TABLES


def test_models_match_migrations(empty_database: str) -> None:
    migrate(empty_database)
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = empty_database
    config.attributes["configure_logger"] = False
    command.check(config)  # raises if the models need a migration that does not exist
