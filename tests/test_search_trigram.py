"""Search on PostgreSQL and the pg_trgm indexes of migration 0005: they exist, the SQL the app
sends can be answered through them, and what comes back that way is exactly the matching tasks.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from auth import Principal
from db_config import normalize_database_url
from db_models import Credential, Task, User
from models import TaskFilters
from services.access import act_as
from services.task_store import TaskStore
from tests.conftest import migrate

_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgres")
pytestmark = pytest.mark.skipif(not _POSTGRES, reason="needs PostgreSQL (TEST_DATABASE_URL)")

TRIGRAM_INDEXES = {
    "ix_tasks_user_id_title_trgm": "title",
    "ix_tasks_user_id_description_trgm": "description",
}
TASKS = [  # (title, description) of the searching user's tasks, among many that match nothing
    ("Quarterly REPORT", None),
    ("reporting tool", "internal"),
    ("other", "see the Report"),
    ("100% done", None),
    ("1000 done", None),
    ("snake_case", None),
    ("snakeXcase", None),
    ("back\\slash", None),
]
FILLER = 2_000
# Other scans a last resort, and filtering rows dear: so the plan looks the term up wherever the
# SQL lets it, whatever the planner would think of these few rows.
SETTINGS = {"enable_seqscan": "off", "enable_indexscan": "off", "cpu_operator_cost": "1"}
# (term, the titles it must find, whether the trigram indexes can serve it)
CASES = [
    ("report", ["Quarterly REPORT", "reporting tool", "other"], True),
    ("REPORTING", ["reporting tool"], True),
    ("100%", ["100% done"], True),  # % literal: not "1000 done"
    ("snake_case", ["snake_case"], True),  # _ literal: not "snakeXcase"
    ("ack\\sl", ["back\\slash"], True),
    ("re", ["Quarterly REPORT", "reporting tool", "other"], False),  # no trigram in the term
    ("e_c", ["snake_case"], False),
    ("%", ["100% done"], False),
]


async def test_migration_created_the_trigram_indexes(database_url: str) -> None:
    engine = create_async_engine(normalize_database_url(database_url))
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'")
        )
        definitions = {name: definition for name, definition in rows}  # noqa: C416
        extensions = await connection.execute(text("SELECT extname FROM pg_extension"))
        installed = set(extensions.scalars())
    await engine.dispose()
    assert {"pg_trgm", "btree_gin"} <= installed
    for name, column in TRIGRAM_INDEXES.items():
        assert definitions[name].endswith(
            f"USING gin (user_id, {column} gin_trgm_ops) WITH (gin_pending_list_limit='256')"
        )


@pytest.fixture
def search_database(empty_database: str) -> str:
    migrate(empty_database)
    return empty_database


@pytest.fixture
async def trigram_only(search_database: str) -> AsyncIterator[tuple[AsyncEngine, Principal]]:
    """A database where only the trigram indexes can find a user's rows (its btree indexes on
    tasks dropped, other scans a last resort), and a user with TASKS after FILLER others."""
    engine = create_async_engine(
        normalize_database_url(search_database),
        connect_args={"server_settings": SETTINGS},
    )
    async with engine.begin() as connection:
        names = await connection.execute(
            text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'tasks' "
                "AND indexname LIKE 'ix_tasks_user_id_%' AND indexname NOT LIKE '%_trgm'"
            )
        )
        for name in names.scalars().all():
            await connection.execute(text(f'DROP INDEX "{name}"'))
        users = await connection.execute(
            insert(User).returning(User.id),
            [
                {"username": name, "email": f"{name}@example.com", "hashed_password": "x"}
                for name in ("searcher", "someone")
            ],
        )
        searcher, someone = users.scalars().all()
        # The searcher's login session: every task statement checks it (access.caller_clause).
        session = await connection.execute(
            insert(Credential).returning(Credential.id),
            [{"user_id": searcher, "kind": "session"}],
        )
        searcher_session = session.scalar_one()
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title, description, completed, priority, "
                "created_at, updated_at, version) "
                "SELECT :user_id, 'filler ' || n, 'nothing to find', false, 'medium', "
                "now(), now(), 1 FROM generate_series(1, :count) AS n"
            ),
            {"user_id": searcher, "count": FILLER},
        )
        rows = [{"user_id": someone, "title": "someone else's report", "description": None}]
        rows += [{"user_id": searcher, "title": t, "description": d} for t, d in TASKS]
        await connection.execute(insert(Task), [{**row, "version": 1} for row in rows])
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("ANALYZE tasks"))
    yield engine, Principal(searcher, searcher_session)
    await engine.dispose()


async def test_search_through_the_trigram_indexes_finds_exactly_the_matches(
    trigram_only: tuple[AsyncEngine, Principal],
) -> None:
    engine, searcher = trigram_only
    act_as(searcher)
    user_id = searcher.user_id
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    for term, expected, indexed in CASES:
        sent.clear()
        filters = TaskFilters(search=term, limit=100)
        tasks, total = await TaskStore(engine).list_page(user_id=user_id, filters=filters)
        assert [task["title"] for task in tasks] == expected, term
        assert total == len(expected)
        [(statement, parameters)] = sent
        async with engine.connect() as connection:
            explained = await connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = "\n".join(str(row[0]) for row in explained)
        conditions = [line for line in plan.splitlines() if "Index Cond" in line]
        # A term with trigrams is looked up in them; one without never is (in no plan, generic
        # plans included: the SQL for it is a form these indexes cannot serve).
        assert any("~~*" in line for line in conditions) is indexed, (term, plan)
        assert not any("~~ " in line for line in conditions), (term, plan)
