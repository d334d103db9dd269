"""Typed dependencies: the session, settings, cache, the current user, and the tasks and files
the caller may use (decided by services.access, the one authorization clause)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Mapping
from functools import cache
from typing import Annotated, Any

import procrastinate
from fastapi import Depends, Header, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

import db_models
from auth import Principal, bearer_user
from exceptions import (
    AttachmentAccessDeniedError,
    AttachmentNotFoundError,
    InvalidTokenError,
    MetricsAuthError,
)
from models import MAX_ID
from openapi_docs import header_schema
from redis_config import Cache
from services import comments as comment_service
from services import sessions as session_service
from services.access import (
    Need,
    act_as,
    caller_clause,
    caller_params,
    file_clause,
    require_scope,
    require_session,
)
from services.task_store import TaskStore
from services.task_writes import TaskRow
from settings import Settings
from storage import Storage


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


# The plain getters are `async def`: a sync dependency would cost a thread-pool hop per request.
async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


async def get_read_engine(request: Request) -> AsyncEngine:
    """The engine in autocommit, for reads that need no transaction (the task store's)."""
    store: TaskStore = request.app.state.tasks
    return store.reads


async def get_secret_key(request: Request) -> str:
    secret: str = request.app.state.secret_key
    return secret


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_jobs(request: Request) -> procrastinate.App:
    """The job engine (jobs/engine.py), for routes that queue work of their own."""
    jobs: procrastinate.App = request.app.state.jobs
    return jobs


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """For background work that opens its own session after the response (C14)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


SessionDep = Annotated[AsyncSession, Depends(get_db)]
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
CacheDep = Annotated[Cache, Depends(get_cache)]
ReadEngineDep = Annotated[AsyncEngine, Depends(get_read_engine)]
SecretKey = Annotated[str, Depends(get_secret_key)]
StorageDep = Annotated[Storage, Depends(get_storage)]
JobsDep = Annotated[procrastinate.App, Depends(get_jobs)]

# auto_error=False: a missing token is our 401 with the standard body, not FastAPI's.
_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def _authenticate(request: Request) -> Principal:
    """Who a valid token names. Whether that user and the session (or personal token) still
    exist is checked by the statement that loads the caller's data (one round trip, not two):
    see services.access.caller_clause, which `act_as` points at this request's credential."""
    principal = await bearer_user(request)
    if isinstance(principal, InvalidTokenError):
        raise principal
    act_as(principal)
    if session_service.touch_due(principal.credential_id):  # at most once a minute
        await session_service.touch(request.app.state.engine, principal)
    return principal


async def get_principal(
    request: Request, token: Annotated[str | None, Depends(_bearer)]
) -> Principal:
    return await _authenticate(request)  # `token` is declared for the OpenAPI scheme only


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_account_principal(principal: CurrentPrincipal) -> Principal:
    """A login session's principal: managing the account (tokens, sessions, password, email)
    is never a personal API token's to do (403)."""
    require_session(principal)
    return principal


AccountPrincipal = Annotated[Principal, Depends(get_account_principal)]


async def get_current_user_id(principal: AccountPrincipal) -> int:
    """The caller's id, for a route no personal token may use (those declare their scope
    below: TaskReader, TaskWriter, ReadableTask…)."""
    return principal.user_id


CurrentUserID = Annotated[int, Depends(get_current_user_id)]


@cache  # one callable per (resource, need): FastAPI then solves it once per request
def _caller_for(resource: str, need: Need) -> Any:
    # Authenticates itself rather than depending on get_principal: one dependency level less on
    # every task and file route (FastAPI's dependency solving is most of their CPU).
    async def caller_for(request: Request, token: Annotated[str | None, Depends(_bearer)]) -> int:
        """The caller's id, if a personal token's scopes allow this use (else 403)."""
        principal = await _authenticate(request)
        require_scope(principal, resource, need)
        return principal.user_id

    return caller_for


# What a route does with the caller's tasks: declared, so a personal token's scopes are
# checked (services.access.require_scope), never by hand.
TaskReader = Annotated[int, Depends(_caller_for("tasks", Need.READ))]
TaskWriter = Annotated[int, Depends(_caller_for("tasks", Need.WRITE))]
FileWriter = Annotated[int, Depends(_caller_for("files", Need.WRITE))]
# Sharing a task (and finding whom to share it with) is a personal token's shares:write.
ShareWriter = Annotated[int, Depends(_caller_for("shares", Need.WRITE))]
SHARE_WRITE_SCOPE = Depends(_caller_for("shares", Need.WRITE))  # for routes that need no id
# Managing webhooks is a personal token's webhooks:write (reading them too: there is no
# webhooks:read, and an endpoint's list shows where the user's data goes).
WebhookManager = Annotated[int, Depends(_caller_for("webhooks", Need.WRITE))]
WebhookID = Annotated[int, Path(gt=0, le=MAX_ID, description="The webhook's id")]
DeliveryID = Annotated[int, Path(gt=0, le=MAX_ID, description="The delivery's id")]


async def _load_caller(session: AsyncSession, user_id: int) -> db_models.User:
    """The caller's row, while its credential is live (else 401)."""
    statement = select(db_models.User).where(caller_clause(db_models.User.__table__))
    user = (await session.execute(statement, caller_params(user_id))).scalar_one_or_none()
    if user is None:
        raise InvalidTokenError()
    return user


async def get_current_user(session: SessionDep, user_id: CurrentUserID) -> db_models.User:
    return await _load_caller(session, user_id)


CurrentUser = Annotated[db_models.User, Depends(get_current_user)]
TaskID = Annotated[int, Path(gt=0, le=MAX_ID, description="The task's id")]


async def get_task_store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.tasks
    return store


TaskStoreDep = Annotated[TaskStore, Depends(get_task_store)]


def _task_for(need: Need, resource: str = "tasks") -> Any:
    caller = Depends(_caller_for(resource, need))

    # `= caller`, not Annotated: the dependency is this closure's, which a string annotation
    # (from __future__) could not name.
    async def task_for(
        task_id: TaskID,
        store: TaskStoreDep,
        user_id: int = caller,
    ) -> TaskRow:
        """The path's task, if the caller may use it for this need (else 401 / 404 / 403)."""
        return await store.read(user_id=user_id, task_id=task_id, need=need)

    return task_for


# What a route needs of the path's task: declared, never checked by hand.
ReadableTask = Annotated[TaskRow, Depends(_task_for(Need.READ))]
WritableTask = Annotated[TaskRow, Depends(_task_for(Need.WRITE))]
OwnedTask = Annotated[TaskRow, Depends(_task_for(Need.OWNER))]
# The same, for a route on the task's files (a personal token's files:* scopes).
FilesOfReadableTask = Annotated[TaskRow, Depends(_task_for(Need.READ, "files"))]
FilesOfWritableTask = Annotated[TaskRow, Depends(_task_for(Need.WRITE, "files"))]


# --- conditional requests (RFC 9110 §13) -------------------------------------------------------


def etag_of(version: int) -> str:
    """A task's entity tag: its version, which every write moves."""
    return f'"{version}"'


def _tag_versions(header: str, *, weak: bool) -> frozenset[int]:
    versions = set()
    for raw in header.split(","):
        tag = raw.strip()
        if tag.startswith("W/"):
            if not weak:
                continue  # If-Match compares strongly: a weak tag never matches
            tag = tag[2:]
        digits = tag[1:-1]
        # Past the version column's range no task can have it: it matches nothing (a 412 for
        # If-Match), rather than reaching the database as an overflow.
        # isascii: str.isdigit() also says yes to "²", which int() refuses.
        quoted = len(tag) >= 3 and tag[0] == tag[-1] == '"'
        number = digits.isascii() and digits.isdigit() and len(digits) <= 10
        if quoted and number and int(digits) <= MAX_ID:
            versions.add(int(digits))
    return frozenset(versions)


# `*` or a list of entity tags (RFC 9110 §8.8.3, ASCII): anything else is a 422, so the schema
# and the server accept the same values. Our tags are versions ("3"); others match nothing.
_ETAG = r'(W/)?"[\x21\x23-\x7e]*"'
_MAX_ETAGS = 4096
ETAG_LIST = rf"^[ \t]*(\*|{_ETAG}([ \t]*,[ \t]*{_ETAG})*)[ \t]*$"


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            pattern=ETAG_LIST,
            max_length=_MAX_ETAGS,
            description='Act only if the task still has one of these versions (its ETag, e.g. "3"),'
            " else 412 and nothing changes; `*`: any version",
        ),
        header_schema(ETAG_LIST, max_length=_MAX_ETAGS, example='"3"'),
    ] = None,
) -> frozenset[int] | None:
    """The versions If-Match allows; None when there is no precondition (absent or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    return _tag_versions(if_match, weak=False)


def not_modified(if_none_match: str | None, version: int) -> bool:
    """Whether If-None-Match (weak comparison) already names this version."""
    if if_none_match is None:
        return False
    return if_none_match.strip() == "*" or version in _tag_versions(if_none_match, weak=True)


IfMatch = Annotated[frozenset[int] | None, Depends(get_if_match)]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        pattern=ETAG_LIST,
        max_length=_MAX_ETAGS,
        description="Answer 304 (no body) if the task still has one of these versions (its ETag)",
    ),
    header_schema(ETAG_LIST, max_length=_MAX_ETAGS, example='"3"'),
]

FileID = Annotated[int, Path(gt=0, le=MAX_ID, description="The file's id")]


def _file_for(need: Need) -> Any:
    caller = Depends(_caller_for("files", need))

    async def file_for(
        file_id: FileID,
        session: SessionDep,
        user_id: int = caller,
    ) -> db_models.TaskFile:
        """The file, if the caller may use it for this need (else 404 / 403)."""
        user = await _load_caller(session, user_id)
        stmt = (
            select(db_models.TaskFile, file_clause(need).label("allowed"))
            .join(db_models.Task, db_models.Task.id == db_models.TaskFile.task_id)
            .where(db_models.TaskFile.id == file_id)
        )
        row = (await session.execute(stmt, caller_params(user.id))).one_or_none()
        if row is None:
            raise AttachmentNotFoundError(file_id)
        file, allowed = row
        if not allowed:
            raise AttachmentAccessDeniedError(file_id)
        return file

    return file_for


ReadableFile = Annotated[db_models.TaskFile, Depends(_file_for(Need.READ))]
# Deleting a file is the task owner's, or its uploader's while they may edit the task.
OwnedFile = Annotated[db_models.TaskFile, Depends(_file_for(Need.OWNER))]


CommentID = Annotated[int, Path(gt=0, le=MAX_ID, description="The comment's id")]


def _comment_for(need: Need) -> Any:
    async def comment_for(
        comment_id: CommentID, store: TaskStoreDep, user_id: TaskWriter
    ) -> Mapping[str, Any]:
        """The comment, if the caller may change it for this need (else 401 / 404 / 403)."""
        return await comment_service.load_comment(
            store, user_id=user_id, comment_id=comment_id, need=need
        )

    return comment_for


# Editing a comment is its author's; deleting it, its author's or the task owner's.
EditableComment = Annotated[Mapping[str, Any], Depends(_comment_for(Need.WRITE))]
DeletableComment = Annotated[Mapping[str, Any], Depends(_comment_for(Need.OWNER))]


async def require_metrics_access(request: Request) -> None:
    """/metrics: with METRICS_TOKEN, only for `Authorization: Bearer <token>` (401 otherwise);
    without it, open outside production and, in production, 404 like any unknown path."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token is None:
        if settings.environment == "production":
            raise StarletteHTTPException(404)
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    # compare_digest: the time taken says nothing about how much of the token was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise MetricsAuthError
