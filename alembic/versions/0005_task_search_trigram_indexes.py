"""Search at scale: GIN indexes on (user_id, title) and (user_id, description) with pg_trgm's
operator class, so the list's `title ILIKE '%term%' OR description ILIKE '%term%'` (escaped, see
services.task_reads) is an index condition instead of a filter over every row the other
conditions leave (at 100 000 tasks: ILIKE over ~23 000 rows).

Why user_id leads (btree_gin): the list runs as a prepared statement, and after five executions
PostgreSQL plans it once for every user and term (a generic plan). With trigram indexes on the
bare columns that plan reads the term's matches across all users, then keeps the caller's: a
200-task user's "report" went 0.5 -> 15 ms on a 1 000 000-row table. Led by user_id, the index
scan stays inside the caller's rows (0.6 ms). Terms without three letters or digits in a row have
no trigram; task_reads does not offer those to these indexes.

PostgreSQL only (SQLite keeps the scan), and only where the app's role may create both
extensions. Both are trusted (PostgreSQL 13+): the database owner, or any role with CREATE on
the database, may install them. A managed database may still refuse (a role without that
privilege, an extension allow-list) or not ship them: this migration then logs a warning and
creates no index, so the upgrade succeeds and search scans the user's rows as before. To add
them later, as a role that may (the build holds writes on tasks; CONCURRENTLY does not):

    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE EXTENSION IF NOT EXISTS btree_gin;
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_tasks_user_id_title_trgm
        ON tasks USING gin (user_id, title gin_trgm_ops) WITH (gin_pending_list_limit = 256);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_tasks_user_id_description_trgm
        ON tasks USING gin (user_id, description gin_trgm_ops) WITH (gin_pending_list_limit = 256);

(This migration says IF NOT EXISTS too, so indexes built that way beforehand are kept.)
Downgrade drops the indexes, never the extensions: something else may use them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

COLUMNS = ("title", "description")
# New rows wait in each index's pending list (fastupdate, the default) until it passes this size
# or a vacuum merges it. Every search reads the whole list, and a long one also makes the planner
# drop the index: at the default 4 MB (~770 pages over both indexes) the 100 000-task search went
# back to its 30 ms btree plan. 256 kB keeps the list to ~32 pages per index (about +0.2 ms per
# search at worst) for the same insert CPU, ~+0.4 kB of WAL per row. fastupdate off: 3-4 x the
# insert CPU (+0.3-0.4 ms a row), 10-30 kB of WAL a row.
PENDING_LIST_KB = 256
# What a server answers when it will not let this role install an extension: insufficient
# privilege, or feature not supported (how allow-listing managed services refuse).
REFUSED = {"42501", "0A000"}


def _install(bind: sa.Connection, extension: str) -> str | None:
    """The schema `extension` is installed in, installing it if the server lets us; None when
    it is not available or we may not."""
    schema_of = (
        "SELECT n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = :name"
    )
    schema: str | None = bind.execute(sa.text(schema_of), {"name": extension}).scalar()
    if schema is not None:
        return schema
    available = "SELECT 1 FROM pg_available_extensions WHERE name = :name"
    if bind.execute(sa.text(available), {"name": extension}).first() is None:
        log.warning("%s is not available on this server: search keeps scanning", extension)
        return None
    try:
        with bind.begin_nested():  # a refusal must not abort the migration's transaction
            bind.exec_driver_sql(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    except sa.exc.DBAPIError as exc:
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code not in REFUSED:
            raise
        log.warning(
            "CREATE EXTENSION %s refused (%s: %s): no trigram indexes, search keeps scanning; "
            "alembic/versions/0005 says how to add them later",
            extension,
            code,
            str(exc.orig).strip(),
        )
        return None
    return str(bind.execute(sa.text(schema_of), {"name": extension}).scalar_one())


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    trigram_schema = _install(bind, "pg_trgm")
    if trigram_schema is None or _install(bind, "btree_gin") is None:
        return
    # Qualified: the extension may live in a schema that is not on the search_path.
    ops = f"{bind.dialect.identifier_preparer.quote_schema(trigram_schema)}.gin_trgm_ops"
    for column in COLUMNS:
        op.create_index(
            f"ix_tasks_user_id_{column}_trgm",
            "tasks",
            ["user_id", column],
            postgresql_using="gin",
            postgresql_ops={column: ops},
            postgresql_with={"gin_pending_list_limit": PENDING_LIST_KB},
            if_not_exists=True,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(f"ix_tasks_user_id_{column}_trgm", table_name="tasks", if_exists=True)
