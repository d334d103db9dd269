"""Revocation answered from the caller's own row (issue #12's per-request cost).

`users.revoked_credentials` lists the user's sessions and personal tokens revoked within the
last access-token lifetime, as `,<credential id>@<unix time to forget it>,…`. Every statement
that loads a caller's data already reads the caller's user row; testing that row's list (a
LIKE on a short string) replaced a second index probe, on `credentials`, per statement
(docs/PERFORMANCE.md, "Accounts and sessions").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As 0009: users keeps AUTOINCREMENT when SQLite's batch mode rebuilds it.
_REBUILD = {
    "table_kwargs": {"sqlite_autoincrement": True},
    "naming_convention": {"pk": "pk_%(table_name)s"},
}


def upgrade() -> None:
    # Plain ADD COLUMN (a batch rebuild would drop 0008's expression indexes on SQLite).
    op.add_column(
        "users",
        sa.Column("revoked_credentials", sa.Text(), server_default="", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("users", **_REBUILD) as batch_op:  # type: ignore[arg-type]
        batch_op.drop_column("revoked_credentials")
    if op.get_bind().dialect.name == "sqlite":  # the rebuild dropped 0008's expression indexes
        for column in ("username", "email"):
            op.create_index(
                f"uq_users_{column}_lower", "users", [sa.text(f"lower({column})")], unique=True
            )
