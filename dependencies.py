"""Typed dependencies: the session, settings, cache, the current user and owned resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import db_models
from auth import token_user_id
from exceptions import (
    AttachmentAccessDeniedError,
    AttachmentNotFoundError,
    InvalidTokenError,
    TaskAccessDeniedError,
    TaskNotFoundError,
)
from models import MAX_ID
from redis_config import Cache
from settings import Settings
from storage import Storage


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def get_secret_key(request: Request) -> str:
    secret: str = request.app.state.secret_key
    return secret


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


SessionDep = Annotated[AsyncSession, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
CacheDep = Annotated[Cache, Depends(get_cache)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SecretKey = Annotated[str, Depends(get_secret_key)]
StorageDep = Annotated[Storage, Depends(get_storage)]

# auto_error=False: a missing token is our 401 with the standard body, not FastAPI's.
_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_current_user(
    session: SessionDep, secret: SecretKey, token: Annotated[str | None, Depends(_bearer)]
) -> db_models.User:
    if not token:
        raise InvalidTokenError("Not authenticated")
    user = await session.get(db_models.User, token_user_id(token, secret=secret))
    if user is None:
        raise InvalidTokenError()
    return user


CurrentUser = Annotated[db_models.User, Depends(get_current_user)]
TaskID = Annotated[int, Path(gt=0, le=MAX_ID)]


async def get_owned_task(task_id: TaskID, session: SessionDep, user: CurrentUser) -> db_models.Task:
    task = await session.get(db_models.Task, task_id)
    if task is None:
        raise TaskNotFoundError(task_id)
    if task.user_id != user.id:
        raise TaskAccessDeniedError(task_id)
    return task


OwnedTask = Annotated[db_models.Task, Depends(get_owned_task)]


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


def get_if_match(
    if_match: Annotated[
        str | None, Header(description="Only act on these versions (ETags)")
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
    str | None, Header(description="Answer 304 if the task still has this version (ETag)")
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
