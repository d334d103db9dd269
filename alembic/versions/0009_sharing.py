"""Sharing, comments and notification preferences (issue #13).

Follows 0008 (accounts and sessions); the two touch different columns and tables.

* `task_shares`: a task shared with another user to view or edit (services.access.task_clause
  widens READ and WRITE with an EXISTS over it); keyed (task_id, user_id), with the recipient's
  index (user_id, task_id) for GET /tasks/shared-with-me and the clause's lookups.
* `task_comments`: comments on a task, oldest first by (task_id, id).
* `users.notify_*`: which notices a user wants by email (all on by default).
* `task_files.uploaded_by`: an editor may delete their own uploads.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREFERENCES = (
    "notify_email",
    "notify_task_shared_with_me",
    "notify_task_completed",
    "notify_comment_on_my_task",
)
# users and task_files keep AUTOINCREMENT (migration 0006) when SQLite's batch mode rebuilds it.
_REBUILD = {
    "table_kwargs": {"sqlite_autoincrement": True},
    "naming_convention": {"pk": "pk_%(table_name)s"},
}


def _create_shares() -> None:
    op.create_table(
        "task_shares",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("permission", sa.String(length=4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "permission IN ('view', 'edit')", name=op.f("ck_task_shares_permission")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_shares_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_task_shares_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "user_id", name=op.f("pk_task_shares")),
    )
    op.create_index("ix_task_shares_user_id_task_id", "task_shares", ["user_id", "task_id"])


def _create_comments() -> None:
    op.create_table(
        "task_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("content", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_comments_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_task_comments_author_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_comments")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_comments_task_id_id", "task_comments", ["task_id", "id"])
    op.create_index(op.f("ix_task_comments_author_id"), "task_comments", ["author_id"])


def upgrade() -> None:
    _create_shares()
    _create_comments()
    # Plain ADD COLUMN (SQLite has it for a column with a constant default): a batch rebuild
    # of `users` would drop 0008's expression indexes (uq_users_*_lower), which SQLite's
    # reflection does not return.
    for name in _PREFERENCES:
        op.add_column(
            "users", sa.Column(name, sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    with op.batch_alter_table("task_files", **_REBUILD) as batch_op:  # type: ignore[arg-type]
        batch_op.add_column(sa.Column("uploaded_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_task_files_uploaded_by_users"), "users", ["uploaded_by"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("task_files", **_REBUILD) as batch_op:  # type: ignore[arg-type]
        batch_op.drop_constraint(op.f("fk_task_files_uploaded_by_users"), type_="foreignkey")
        batch_op.drop_column("uploaded_by")
    with op.batch_alter_table("users", **_REBUILD) as batch_op:  # type: ignore[arg-type]
        for name in reversed(_PREFERENCES):
            batch_op.drop_column(name)
    if op.get_bind().dialect.name == "sqlite":  # the rebuild dropped 0008's expression indexes
        for column in ("username", "email"):
            op.create_index(
                f"uq_users_{column}_lower", "users", [sa.text(f"lower({column})")], unique=True
            )
    op.drop_table("task_comments")
    op.drop_table("task_shares")
