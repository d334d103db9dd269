"""Each user row counts its tasks: the total of an unfiltered `GET /tasks` without a count.

`X-Total-Count` of an unfiltered list was a count over every one of the user's tasks, which
grew with them (a 50-task page at 10 000 tasks cost 4 x the same page at 200). Every write
that adds or removes a task already updates the user row (its `data_version`) in the same
transaction, so the count moves there too (services.task_store.BUMP).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column("task_count", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE users SET task_count = (SELECT count(*) FROM tasks WHERE tasks.user_id = users.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("task_count")
