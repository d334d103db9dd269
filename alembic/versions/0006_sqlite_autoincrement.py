"""SQLite never reuses ids: users, tasks and task_files get AUTOINCREMENT.

Without it SQLite hands a new row max(id) + 1, so deleting the newest task and creating one
gave the new task the old id (a client holding the old URL saw someone else's data there, and
ETags and caches keyed by id could match). PostgreSQL's sequences never go back: no-op there.
The tables are rebuilt (batch mode copies rows, indexes, constraints); ids already freed
before this migration cannot be told apart and may still be handed out once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents first: a rebuilt child's foreign key then points at the rebuilt parent.
TABLES = ("users", "tasks", "task_files")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table,
            recreate="always",
            table_kwargs={"sqlite_autoincrement": autoincrement},
            naming_convention={"pk": "pk_%(table_name)s"},  # SQLite reflects no PK name
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
