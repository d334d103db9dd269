"""Typed dependencies: the session, settings, cache, the current user and owned resources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import db_models
from auth import bearer_user
from db_config import read_only
from exceptions import (
    AttachmentAccessDeniedError,
    AttachmentNotFoundError,
    InvalidTokenError,
    TaskAccessDeniedError,
    TaskNotFoundError,
)
from models import MAX_ID
from redis_config import Cache
from services import task_reads
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


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_read_engine(request: Request) -> AsyncEngine:
    """The engine in autocommit, for reads that need no transaction (built once per app)."""
    state = request.app.state
    engine: AsyncEngine | None = getattr(state, "read_engine", None)
    if engine is None or engine.sync_engine.pool is not state.engine.sync_engine.pool:
        engine = state.read_engine = read_only(state.engine)
    return engine


async def get_secret_key(request: Request) -> str:
    secret: str = request.app.state.secret_key
    return secret


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


SessionDep = Annotated[AsyncSession, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
CacheDep = Annotated[Cache, Depends(get_cache)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
ReadEngineDep = Annotated[AsyncEngine, Depends(get_read_engine)]
SecretKey = Annotated[str, Depends(get_secret_key)]
StorageDep = Annotated[Storage, Depends(get_storage)]

# auto_error=False: a missing token is our 401 with the standard body, not FastAPI's.
_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_current_user_id(
    request: Request, token: Annotated[str | None, Depends(_bearer)]
) -> int:
    """The id a valid token names. Whether that user still exists is checked by the query that
    loads the caller's data (one round trip, not two): see CurrentUser and services.task_reads."""
    user_id = bearer_user(request)  # `token` is declared for the OpenAPI scheme only
    if isinstance(user_id, InvalidTokenError):
        raise user_id
    return user_id


CurrentUserID = Annotated[int, Depends(get_current_user_id)]


async def get_current_user(session: SessionDep, user_id: CurrentUserID) -> db_models.User:
    # No SQL when get_owned_task already loaded the user into this session's identity map.
    user = await session.get(db_models.User, user_id)
    if user is None:
        raise InvalidTokenError()
    return user


CurrentUser = Annotated[db_models.User, Depends(get_current_user)]
TaskID = Annotated[int, Path(gt=0, le=MAX_ID)]


async def get_owned_task(
    task_id: TaskID, session: SessionDep, user_id: CurrentUserID
) -> db_models.Task:
    """The caller's task, for writing: the user and the task (with its tags) in one statement."""
    stmt = (
        select(db_models.User, db_models.Task)
        .outerjoin(db_models.Task, db_models.Task.id == task_id)
        .where(db_models.User.id == user_id)
    )
    row = (await session.execute(stmt)).unique().one_or_none()
    if row is None:
        raise InvalidTokenError()
    task = row[1]
    if task is None:
        raise TaskNotFoundError(task_id)
    if task.user_id != user_id:
        raise TaskAccessDeniedError(task_id)
    return task


OwnedTask = Annotated[db_models.Task, Depends(get_owned_task)]


async def get_owned_task_row(
    request: Request, task_id: TaskID, user_id: CurrentUserID
) -> Mapping[str, Any]:
    """The caller's task, for reading: a Core row (columns, `version`, `tags`), one statement."""
    engine = await get_read_engine(request)
    return await task_reads.get_owned_task(engine, user_id=user_id, task_id=task_id)


OwnedTaskRow = Annotated[Mapping[str, Any], Depends(get_owned_task_row)]


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
        if len(tag) >= 3 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit():
            versions.add(int(tag[1:-1]))
    return frozenset(versions)


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(
            include_in_schema=False,  # documented in the route text; see docs/SECURITY.md
            description="Only act on these versions (ETags)",
        ),
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
        include_in_schema=False,
        description="Answer 304 if the task still has this version (ETag)",
    ),
]

FileID = Annotated[int, Path(gt=0, le=MAX_ID)]


async def get_owned_file(
    file_id: FileID, session: SessionDep, user: CurrentUser
) -> db_models.TaskFile:
    stmt = (
        select(db_models.TaskFile, db_models.Task.user_id)
        .join(db_models.Task, db_models.Task.id == db_models.TaskFile.task_id)
        .where(db_models.TaskFile.id == file_id)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise AttachmentNotFoundError(file_id)
    file, owner_id = row
    if owner_id != user.id:
        raise AttachmentAccessDeniedError(file_id)
    return file


OwnedFile = Annotated[db_models.TaskFile, Depends(get_owned_file)]
