"""Accounts and sessions: case-insensitive names and addresses, sessions and personal API
tokens (`credentials`), refresh tokens, reset and verification tokens, `email_verified`.

Names and addresses become unique regardless of case, through unique indexes on lower(...).
If existing rows differ only by case the upgrade stops, before changing anything, naming
them: rename or merge those accounts first (README, "Upgrading to 0008").

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)


class CaseCollisionError(RuntimeError):
    """Rows that would break the new case-insensitive uniqueness."""


def _collisions(column: str) -> list[str]:
    """`<column> a, b (ids 1, 2)` for each group of rows equal but for case."""
    users = sa.table("users", sa.column("id"), sa.column(column))
    lowered = sa.func.lower(users.c[column])
    shared = sa.select(lowered).group_by(lowered).having(sa.func.count() > 1)
    found = op.get_bind().execute(
        sa.select(users.c.id, users.c[column])
        .where(lowered.in_(shared))
        .order_by(lowered, users.c.id)
    )
    groups: dict[str, list[tuple[int, str]]] = {}
    for row_id, value in found:
        groups.setdefault(value.lower(), []).append((row_id, value))
    return [
        f"{column} {', '.join(repr(v) for _, v in rows)} (ids {', '.join(str(i) for i, _ in rows)})"
        for rows in groups.values()
    ]


def upgrade() -> None:
    clashes = _collisions("username") + _collisions("email")
    if clashes:
        raise CaseCollisionError(
            "migration 0008 stopped, nothing changed: these users differ only by case, and "
            "names and emails are now unique regardless of case. Rename or merge them, then "
            "upgrade again (README, 'Upgrading to 0008'):\n  " + "\n  ".join(clashes)
        )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column("email_verified", sa.Boolean(), server_default="0", nullable=False)
        )
    op.create_index(
        "uq_users_username_lower", "users", [sa.literal_column("lower(username)")], unique=True
    )
    op.create_index(
        "uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True
    )
    _create_credentials()
    _create_token_tables()


def _create_credentials() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("last_used_at", _TIMESTAMP, nullable=True),
        sa.Column("user_agent", sa.String(200), nullable=True),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("scopes", sa.String(200), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("expires_at", _TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_credentials_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
        sa.UniqueConstraint("secret_hash", name="uq_credentials_secret_hash"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_credentials_user_id_kind", "credentials", ["user_id", "kind"])


def _create_token_tables() -> None:
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        sa.Column("spent_at", _TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credentials.id"],
            name="fk_refresh_tokens_credential_id_credentials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_tokens"),
    )
    op.create_index("ix_refresh_tokens_credential_id", "refresh_tokens", ["credential_id"])
    op.create_table(
        "one_time_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(10), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        sa.Column("used_at", _TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_one_time_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_one_time_tokens"),
    )
    op.create_index("ix_one_time_tokens_user_id", "one_time_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("one_time_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("credentials")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_index("uq_users_username_lower", table_name="users")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("email_verified")
