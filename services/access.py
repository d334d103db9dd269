"""The one authorization clause: which tasks a caller may read, write or own.

Every task and file statement joins `task_clause(need)`; every refusal is decided by `refuse`,
which keeps the original API's distinction: 401 when the caller no longer exists, 404 when the
task does not exist, 403 when it exists but is not the caller's to use. Shares (view/edit) are
here, and only here: `task_clause` is the owner's test OR an EXISTS over `task_shares`. A
personal token's scopes are checked here too (`require_scope`, keyed by `Need`), and whether
the request's session or token is still live (`caller_clause`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, NoReturn

from sqlalchemy import ColumnElement, Integer, String, and_, any_, bindparam, exists, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from auth import Principal
from db_models import Task, TaskComment, TaskFile, TaskShare, User
from exceptions import (
    ForbiddenError,
    InsufficientScopeError,
    InvalidTokenError,
    PreconditionFailedError,
    ResourceNotFoundError,
    TaskAccessDeniedError,
    TaskNotFoundError,
)

_TASKS = Task.metadata.tables[Task.__tablename__]
_USERS = User.metadata.tables[User.__tablename__]
_SHARES = TaskShare.metadata.tables[TaskShare.__tablename__]
_FILES = TaskFile.metadata.tables[TaskFile.__tablename__]
_COMMENTS = TaskComment.metadata.tables[TaskComment.__tablename__]
# The caller, the credential it presents and the task, as bound parameters every task
# statement shares. Not named after columns: an UPDATE reserves those names for its SET clause.
CALLER = bindparam("the_caller", type_=Integer)
REVOKED = bindparam("the_revoked", type_=String)
TASK_ID = bindparam("the_task", type_=Integer)

# The credential (session or personal token) of the request being served, as the needle that
# finds it among the caller's revoked ones; set once by the dependency that authenticates the
# request (dependencies._authenticate). The default is found in every list, so a statement run
# outside an authenticated request finds no caller (401).
_NEEDLE: ContextVar[str] = ContextVar("the_revoked", default="%")


def act_as(principal: Principal) -> None:
    """The statements of this request check `principal`'s credential (see `caller_clause`)."""
    _NEEDLE.set(revoked_needle(principal.credential_id))


def require_scope(principal: Principal, resource: str, need: Need) -> None:
    """A personal API token's scopes, checked against what the route does with `resource`
    ("tasks", "files"): READ needs `<resource>:read` (or `:write`, which includes it), WRITE and
    OWNER need `<resource>:write`. A login session (no scopes) may do everything."""
    if principal.scopes is None:
        return
    write = f"{resource}:write"
    if write in principal.scopes or (need is Need.READ and f"{resource}:read" in principal.scopes):
        return
    raise InsufficientScopeError(f"{resource}:read" if need is Need.READ else write)


def require_session(principal: Principal) -> None:
    """Account management (tokens, sessions, password, email) needs a login session: a
    personal API token is refused (403), whatever its scopes."""
    if principal.scopes is not None:
        raise InsufficientScopeError("account")


def caller_params(user_id: int, **more: Any) -> dict[str, Any]:
    """The bound parameters naming the caller: its id, and the needle that finds the request's
    credential in the caller's list of revoked ones (no credential: a needle found in every
    list, so a statement run outside an authenticated request finds no caller, 401)."""
    return {"the_caller": user_id, "the_revoked": _NEEDLE.get(), **more}


def revoked_needle(credential_id: int) -> str:
    """The LIKE pattern that finds a credential in `users.revoked_credentials`
    (`,<id>@<forget at>,…`); no credential: `%`, which every list matches."""
    return f"%,{credential_id}@%" if credential_id else "%"


def caller_clause(users: Any = _USERS) -> ColumnElement[bool]:
    """The caller's user row, only while the credential the request presents is not revoked.

    Revocation (logout, a session ended, a password changed or reset, a token deleted) deletes
    the credential row and lists its id on the user's row (`users.revoked_credentials`, kept
    for an access token's lifetime: services.sessions.revoke). Every statement that loads or
    writes a caller's data finds its user row through this clause, so the next request with
    that access token is a 401 on every instance at once, tested in the row the statement reads
    anyway: no extra round trip and no second index probe (docs/PERFORMANCE.md, "Accounts and
    sessions")."""
    return and_(users.c.id == CALLER, _not_revoked(users))


def _not_revoked(users: Any) -> ColumnElement[bool]:
    listed: ColumnElement[str] = users.c.revoked_credentials
    return listed.not_like(REVOKED)


# The caller's row under its own name, for statements whose FROM already has `users` (BUMP
# updates the owners' rows: an unaliased subquery would correlate to the row being updated).
_CALLER_ROW = _USERS.alias("caller_row")


def live_credential() -> ColumnElement[bool]:
    """Whether the caller's row is there with the request's credential not revoked
    (`caller_clause` for a statement that does not read the caller's row itself)."""
    return exists().where(caller_clause(_CALLER_ROW))


class Need(enum.Enum):
    """What a route does with a task."""

    READ = "read"
    WRITE = "write"
    OWNER = "owner"


# What each share permission allows beyond the owner's own tasks (OWNER: nothing).
_SHARED_FOR = {Need.READ: ("view", "edit"), Need.WRITE: ("edit",), Need.OWNER: ()}


def task_clause(need: Need) -> ColumnElement[bool]:
    """The tasks the caller (`the_caller`) may use for `need`: their own, or (READ, WRITE) one
    shared with them with a permission that allows it, and nowhere else.

    The owner's test comes first and alone on its side of the OR: an owner's read of one task
    stays a primary-key lookup whose EXISTS is never evaluated (PostgreSQL stops at the first
    true arm), and the lists, which take OWNER, keep `user_id = :caller` for their indexes."""
    own = _TASKS.c.user_id == CALLER
    permissions = _SHARED_FOR[need]
    if not permissions:
        return own
    share = exists().where(_SHARES.c.task_id == _TASKS.c.id, _SHARES.c.user_id == CALLER)
    if permissions != _SHARED_FOR[Need.READ]:  # READ: any share (the column allows no other)
        share = share.where(_SHARES.c.permission.in_(permissions))
    return or_(own, share)


def shared_clause() -> ColumnElement[bool]:
    """The shares that name the caller: GET /tasks/shared-with-me lists their tasks (joined on
    `task_shares.task_id = tasks.id`, read through the (user_id, task_id) index)."""
    return _SHARES.c.user_id == CALLER


def file_clause(need: Need) -> ColumnElement[bool]:
    """Who may use a file (joined to its task) for `need`: as its task, except that OWNER (a
    delete) also allows the uploader while they may still edit the task."""
    if need is not Need.OWNER:
        return task_clause(need)
    mine = and_(_FILES.c.uploaded_by == CALLER, task_clause(Need.WRITE))
    return or_(task_clause(Need.OWNER), mine)


def comment_clause(need: Need) -> ColumnElement[bool]:
    """Who may change a comment (joined to its task): WRITE (edit) its author, while they can
    still read the task; OWNER (delete) the author likewise, or the task's owner."""
    author = and_(_COMMENTS.c.author_id == CALLER, task_clause(Need.READ))
    return or_(author, task_clause(Need.OWNER)) if need is Need.OWNER else author


# The caller's row outer-joined to the task by id (no authorization filter), with whether the
# clause allows it: the one statement that tells 401, 404 and 403 apart.
_VERDICTS = {
    need: select(
        _USERS.c.id.label("caller"),
        _TASKS.c.id,
        task_clause(need).label("allowed"),
    )
    .select_from(_USERS.outerjoin(_TASKS, _TASKS.c.id == TASK_ID))
    .where(caller_clause())
    for need in Need
}


def decide(row: Mapping[Any, Any] | None, *, task_id: int) -> None:
    """Raise the refusal a `users LEFT JOIN tasks` row means (see `_VERDICTS`), if any."""
    if row is None:
        raise InvalidTokenError()
    if row["id"] is None:
        raise TaskNotFoundError(task_id)
    if not row["allowed"]:
        raise TaskAccessDeniedError(task_id)


def decide_comment(row: Mapping[Any, Any] | None, *, comment_id: int) -> None:
    """`decide` for a comment: the caller's row outer-joined to the comment, with whether
    `comment_clause` allows it (401 / 404 / 403)."""
    if row is None:
        raise InvalidTokenError()
    if row["id"] is None:
        message = f"Comment with ID {comment_id} not found"
        raise ResourceNotFoundError(message, comment_id=comment_id)
    if not row["allowed"]:
        message = f"You may not change comment {comment_id}"
        raise ForbiddenError(message, comment_id=comment_id)


async def refuse(
    connection: AsyncConnection,
    *,
    user_id: int,
    task_id: int,
    need: Need,
    allowed: frozenset[int] | None = None,
    forbidden_as_missing: bool = False,
) -> NoReturn:
    """Why a write that had to match the caller's task matched nothing: 401, 404 or 403; else
    the task is there and the caller may use it, so If-Match failed (412) or, without one, the
    task was deleted meanwhile (404). `forbidden_as_missing`: 404 for 403 (a bulk body must
    not probe which ids exist)."""
    params = caller_params(user_id, the_task=task_id)
    row = (await connection.execute(_VERDICTS[need], params)).mappings().first()
    if forbidden_as_missing and row is not None and row["id"] is not None:
        raise TaskNotFoundError(task_id)
    decide(row, task_id=task_id)
    if allowed is not None:
        raise PreconditionFailedError(task_id)
    raise TaskNotFoundError(task_id)


def check_version(task_id: int, version: int, allowed: frozenset[int] | None) -> None:
    """If-Match, checked here and in `version_clause`, nowhere else. `allowed` is None when
    there is no precondition; a write checks it on the row it has locked, so the version
    cannot move in between."""
    if allowed is not None and version not in allowed:
        raise PreconditionFailedError(task_id)


def version_clause() -> ColumnElement[bool]:
    """If-Match inside PostgreSQL's one-statement write (services.task_store_pg): the same rule
    as `check_version`, on the row the statement locks; its versions bound as one array
    `allowed` (one parameter however many entity tags the header lists)."""
    allowed = bindparam("allowed", type_=postgresql.ARRAY(Integer))
    return _TASKS.c.version == any_(allowed)


def check_share_removal(task_id: int, *, owner: int, recipient: int, caller: int) -> None:
    """DELETE /tasks/{id}/share/{username}: the owner removes any share, a recipient only
    their own (leaving the task); anyone else who can read the task is refused (403)."""
    if caller not in (owner, recipient):
        raise TaskAccessDeniedError(task_id)
