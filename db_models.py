"""SQLAlchemy tables (2.0 typed mappings). Every type works on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    func,
    literal_column,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC timestamp")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


# SQLite reuses the id of a deleted newest row unless the table is AUTOINCREMENT (migration
# 0006); PostgreSQL never does. Declared here so the models and the migrations agree.
_NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class User(Base):
    __tablename__ = "users"
    # Names and addresses are unique regardless of case (migration 0008): `Alice` is `alice`.
    # The plain unique constraints stay; these are the ones that decide.
    __table_args__ = (
        Index("uq_users_username_lower", func.lower(literal_column("username")), unique=True),
        Index("uq_users_email_lower", func.lower(literal_column("email")), unique=True),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped in the same transaction as every write to the user's tasks: the stats cache key
    # carries it, so a cached value can never outlive the data it describes.
    data_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How many tasks the user has, moved in the same UPDATE (services.task_store.BUMP): the
    # total of an unfiltered list, without counting.
    task_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    email_verified: Mapped[bool] = mapped_column(default=False, server_default="0")
    # Which emails the user wants (GET/PATCH /notifications/preferences); columns, not a table,
    # so the write that triggers a notice reads them in the row it already updates or loads.
    notify_email: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_task_shared_with_me: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_task_completed: Mapped[bool] = mapped_column(default=True, server_default=true())
    notify_comment_on_my_task: Mapped[bool] = mapped_column(default=True, server_default=true())
    # The sessions and personal tokens revoked within the last access-token lifetime,
    # `,<credential id>@<unix time to forget it>,…` (services/sessions.revoke): every statement
    # that loads the caller's data tests it in the row it reads anyway (access.caller_clause).
    revoked_credentials: Mapped[str] = mapped_column(Text, default="", server_default="")


def _trigram_index(column: str) -> Index:
    """A GIN index on (user_id, column) with pg_trgm's operator class (migration 0005).

    PostgreSQL only, and only where the migration could create pg_trgm and btree_gin; elsewhere
    search scans the user's rows. alembic/env.py compares such indexes on their dialect only.
    """
    return Index(
        f"ix_tasks_user_id_{column}_trgm",
        "user_id",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
        postgresql_with={"gin_pending_list_limit": 256},  # kB: see migration 0005
    ).ddl_if(dialect="postgresql")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("priority IN ('low', 'medium', 'high')", name="priority"),
        Index("ix_tasks_user_id_id", "user_id", "id"),
        Index("ix_tasks_user_id_created_at", "user_id", "created_at"),
        Index("ix_tasks_user_id_due_date", "user_id", "due_date"),
        Index("ix_tasks_user_id_priority", "user_id", "priority"),
        # Covers the stats totals (an index-only scan once vacuumed).
        Index(
            "ix_tasks_user_id_completed_priority_due_date",
            "user_id",
            "completed",
            "priority",
            "due_date",
        ),
        # Search (services.task_filters): ILIKE '%term%' as an index condition. Led by the owner
        # (btree_gin), so even a generic plan reads one user's entries, never every user's.
        *(_trigram_index(column) for column in ("title", "description")),
        _NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    completed: Mapped[bool] = mapped_column(default=False)
    priority: Mapped[str] = mapped_column(String(6), default="medium")
    due_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Moved by every write, in the write's own UPDATE (services.task_store): the task's ETag.
    version: Mapped[int] = mapped_column(Integer)

    # Loaded with a JOIN so a task and its tags come back in one round trip.
    tag_rows: Mapped[list[TaskTag]] = relationship(
        lazy="joined",
        order_by="TaskTag.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class TaskTag(Base):
    """One tag on one task; a table (not an array) so tags filter and count in SQL everywhere."""

    __tablename__ = "task_tags"
    __table_args__ = (
        Index("ix_task_tags_tag_task_id", "tag", "task_id"),
        Index("ix_task_tags_user_id_tag", "user_id", "tag"),
    )

    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The task's owner, copied (tasks never change hands) so a user's tag counts need no join
    # (services.stats). No foreign key of its own: the row already goes with its task.
    user_id: Mapped[int] = mapped_column(Integer)


class TaskFile(Base):
    """A file attached to a task. The bytes live in the storage backend under `storage_key`.

    Rows go with their task (ON DELETE CASCADE); blobs are removed after the commit by a
    background task, and `reconcile-storage` removes any that a crash left behind.
    """

    __tablename__ = "task_files"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    storage_key: Mapped[str] = mapped_column(String(100), unique=True)
    original_filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    file_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Who uploaded it: an editor of a shared task may delete their own uploads (NULL: uploaded
    # before shares existed, or by an account since deleted).
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class TaskShare(Base):
    """A task shared with another user, to view or to edit (services.access.task_clause)."""

    __tablename__ = "task_shares"
    __table_args__ = (
        CheckConstraint("permission IN ('view', 'edit')", name="permission"),
        # The recipient's shares: GET /tasks/shared-with-me, and the clause's EXISTS by recipient.
        Index("ix_task_shares_user_id_task_id", "user_id", "task_id"),
    )

    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskComment(Base):
    """A comment on a task; it goes with the task and with its author."""

    __tablename__ = "task_comments"
    __table_args__ = (Index("ix_task_comments_task_id_id", "task_id", "id"), _NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    content: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A client's Idempotency-Key and the answer its first request got (see idempotency.py)."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Until then the reservation is held; after it, a request that died is presumed gone.
    locked_until: Mapped[datetime]
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(100))
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)


class Credential(Base):
    """What an access token stands for: a login session (`kind` "session") or a personal API
    token ("token"). Deleting the row revokes it at once: every statement that loads a
    caller's data checks that the caller's credential row still exists
    (services.access.caller_clause), on every instance, with no cache in between."""

    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_user_id_kind", "user_id", "kind"), _NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(200))
    # Personal API tokens only: a name, space-separated scopes, the token's SHA-256, an expiry.
    name: Mapped[str | None] = mapped_column(String(100))
    scopes: Mapped[str | None] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None]


class RefreshToken(Base):
    """A session's refresh token, by its SHA-256. Spent on use; a spent one presented again
    ends its session (theft detection). Goes with its session (ON DELETE CASCADE)."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime]
    spent_at: Mapped[datetime | None]


class OneTimeToken(Base):
    """A password-reset or email-verification token, by its SHA-256; single use."""

    __tablename__ = "one_time_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(10))
    # The address a verification token was sent to: a changed email makes it worthless.
    email: Mapped[str] = mapped_column(String(254))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
