"""The job engine (issue #14): procrastinate's tables on PostgreSQL, and the relay's start.

* PostgreSQL: procrastinate's schema, as the pinned procrastinate (requirements.txt) ships it
  (`procrastinate_jobs`, `_events`, `_periodic_defers`, `_workers`, their functions, triggers
  and types). Upgrading procrastinate to a release with schema changes takes a migration of
  ours applying its SQL migrations (README, "Jobs"). SQLite keeps jobs in process memory.
* Both: the relay's position (`event_consumers` row "relay") starts after the events already
  recorded, so upgrading does not mail or deliver the past again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from procrastinate.schema import SchemaManager
from sqlalchemy.util import await_

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The last event in reading order (PostgreSQL: of a finished transaction; a later commit sorts
# after it).
_LAST = "SELECT txid, id FROM events {where} ORDER BY txid DESC, id DESC LIMIT 1"
_FINISHED = "WHERE txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_CONSUMERS = sa.table(
    "event_consumers",
    sa.column("name", sa.String),
    sa.column("txid", sa.BigInteger),
    sa.column("event_id", sa.BigInteger),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)

# Every object procrastinate's schema creates is named procrastinate_*.
_DROP_PROCRASTINATE = r"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT tablename FROM pg_tables
           WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\_%' LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\_%' LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.signature);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\_%'
             AND t.typtype IN ('e', 'c') LOOP  -- the tables' own row types went with them
    EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname);
  END LOOP;
END $$;
"""


def _run_script(sql: str) -> None:
    """Run a multi-statement script as one simple query (asyncpg prepares single statements)."""
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    await_(raw.execute(sql))


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        _run_script(SchemaManager.get_schema())
    last = bind.execute(sa.text(_LAST.format(where=_FINISHED if postgres else ""))).first()
    txid, event_id = (last.txid, last.id) if last is not None else (0, 0)
    start = {"name": "relay", "txid": txid, "event_id": event_id, "updated_at": datetime.now(UTC)}
    op.bulk_insert(_CONSUMERS, [start])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM event_consumers WHERE name = 'relay'"))
    if op.get_bind().dialect.name == "postgresql":
        _run_script(_DROP_PROCRASTINATE)
