"""Alembic migrations upgrade, downgrade and upgrade again cleanly, and match the models."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from db_config import normalize_database_url
from tests.conftest import ROOT, admin_sql, migrate

APP_TABLES = {"users", "tasks", "task_tags", "task_files", "idempotency_keys"}
TRIGRAM_INDEXES = {"ix_tasks_user_id_title_trgm", "ix_tasks_user_id_description_trgm"}
_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgres")


def _inspect(url: str, read: Callable[[Connection], Any]) -> Any:
    async def run() -> Any:
        engine = create_async_engine(normalize_database_url(url))
        async with engine.connect() as connection:
            value = await connection.run_sync(read)
        await engine.dispose()
        return value

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    tables: set[str] = _inspect(url, lambda sync: set(inspect(sync).get_table_names()))
    return tables - {"alembic_version"}


def _task_indexes(url: str) -> set[str]:
    return {index["name"] for index in _inspect(url, lambda s: inspect(s).get_indexes("tasks"))}


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


@pytest.fixture
def restricted_role() -> Iterator[tuple[str, str]]:
    """A login role that is no superuser and has no CREATE on any database: what a managed
    database may give the app. Needs a TEST_DATABASE_URL user that may create roles."""
    base = os.environ["TEST_DATABASE_URL"]
    may = "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
    if not _inspect(base, lambda sync: sync.execute(text(may)).scalar()):
        pytest.skip("the TEST_DATABASE_URL user may not create roles")
    role, password = f"tm_restricted_{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
    admin_sql(base, f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    try:
        yield role, password
    finally:
        admin_sql(base, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.skipif(not _POSTGRES, reason="needs PostgreSQL (TEST_DATABASE_URL)")
@pytest.mark.parametrize("preinstalled", [False, True], ids=["refused", "preinstalled"])
def test_trigram_migration_as_a_role_that_may_not_create_extensions(
    restricted_role: tuple[str, str], preinstalled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_trgm and btree_gin are trusted extensions, so a database owner may install them; a role
    without CREATE on the database may not. Its upgrade still succeeds, without the trigram
    indexes, unless an administrator installed the extensions beforehand."""
    base = os.environ["TEST_DATABASE_URL"]
    role, password = restricted_role
    name = f"tm_migrations_{uuid.uuid4().hex[:8]}"
    admin_sql(base, f'CREATE DATABASE "{name}"')  # owned by the administrator, not by the role
    try:
        admin_sql(base, f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"', database=name)
        if preinstalled:
            admin_sql(base, "CREATE EXTENSION pg_trgm; CREATE EXTENSION btree_gin", database=name)
        url = normalize_database_url(base).set(username=role, password=password, database=name)
        as_role = url.render_as_string(hide_password=False)

        with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
            migrate(as_role)

        refused = [r.getMessage() for r in caplog.records if "refused (42501" in r.getMessage()]
        assert len(refused) == (0 if preinstalled else 1), caplog.text
        assert _tables(as_role) >= APP_TABLES
        version = "SELECT version_num FROM alembic_version"
        head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
        assert _inspect(as_role, lambda sync: sync.execute(text(version)).scalar()) == head
        indexes = _task_indexes(as_role)
        assert TRIGRAM_INDEXES & indexes == (TRIGRAM_INDEXES if preinstalled else set())
        migrate(as_role, "base", down=True)
        assert _tables(as_role) == set()
    finally:
        admin_sql(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _execute(url: str, *statements: str) -> None:
    async def run() -> None:
        engine = create_async_engine(normalize_database_url(url))
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
        await engine.dispose()

    asyncio.run(run())


def _user(row_id: int, name: str, email: str) -> str:
    return (
        "INSERT INTO users (id, username, email, hashed_password, created_at, data_version, "
        f"task_count) VALUES ({row_id}, '{name}', '{email}', 'x', '2026-01-01 00:00:00', 0, 0)"
    )


def test_0008_stops_on_names_differing_only_by_case_then_upgrades_once_resolved(
    empty_database: str,
) -> None:
    migrate(empty_database, "0007")
    _execute(
        empty_database,
        _user(1, "Alice", "alice@example.com"),
        _user(2, "alice", "alice2@example.com"),
        _user(3, "bob", "Bob@Example.com"),
        _user(4, "bobby", "bob@example.com"),
        _user(5, "carol", "carol@example.com"),
    )
    with pytest.raises(RuntimeError) as stopped:
        migrate(empty_database)
    message = str(stopped.value)
    assert "username 'Alice', 'alice' (ids 1, 2)" in message
    assert "email 'Bob@Example.com', 'bob@example.com' (ids 3, 4)" in message
    assert "carol" not in message
    version = "SELECT version_num FROM alembic_version"
    assert _inspect(empty_database, lambda sync: sync.execute(text(version)).scalar()) == "0007"

    _execute(
        empty_database,
        "UPDATE users SET username = 'alice_2' WHERE id = 2",
        "UPDATE users SET email = 'bobby@example.com' WHERE id = 4",
    )
    migrate(empty_database)
    assert _tables(empty_database) >= APP_TABLES | {"credentials", "refresh_tokens"}
