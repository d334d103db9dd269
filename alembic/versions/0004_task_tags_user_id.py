"""Stats at scale: task_tags carries its task's user_id, indexed (user_id, tag), so a user's tag
counts are one index range instead of a join over every tag row; the totals read a covering
index (user_id, completed, priority, due_date), which replaces ix_tasks_user_id_completed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_tags") as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
    # Tasks never change owner, so the copy stays true; the services set it on every new tag.
    op.execute(
        "UPDATE task_tags SET user_id = "
        "(SELECT tasks.user_id FROM tasks WHERE tasks.id = task_tags.task_id)"
    )
    with op.batch_alter_table("task_tags") as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_task_tags_user_id_tag", ["user_id", "tag"], unique=False)
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.create_index(
            "ix_tasks_user_id_completed_priority_due_date",
            ["user_id", "completed", "priority", "due_date"],
            unique=False,
        )
        batch_op.drop_index("ix_tasks_user_id_completed")


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.create_index("ix_tasks_user_id_completed", ["user_id", "completed"], unique=False)
        batch_op.drop_index("ix_tasks_user_id_completed_priority_due_date")
    with op.batch_alter_table("task_tags") as batch_op:
        batch_op.drop_index("ix_task_tags_user_id_tag")
        batch_op.drop_column("user_id")
