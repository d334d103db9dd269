"""The caller's account: profile, password, deletion and login sessions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Response

import db_models
from account_models import (
    AccountDeletion,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    Notice,
    PasswordChange,
    Profile,
    ProfileUpdate,
    SessionRead,
)
from dependencies import AccountPrincipal, CurrentUser, JobsDep, SessionDep, SettingsDep
from jobs.engine import defer
from models import MAX_ID
from openapi_docs import error_responses
from services import api_tokens
from services import sessions as session_service
from services import users as user_service

router = APIRouter(
    prefix="/users/me", tags=["account"], responses=error_responses(401, 403, 429, 503)
)
_BODY = error_responses(400, 413, 422)
SessionID = Annotated[int, Path(gt=0, le=MAX_ID, description="The session's id")]
TokenID = Annotated[int, Path(gt=0, le=MAX_ID, description="The personal API token's id")]


@router.get("", response_model=Profile)
async def get_profile(user: CurrentUser) -> db_models.User:
    """The caller's profile."""
    return user


@router.patch("", response_model=Profile, responses={**_BODY, **error_responses(409)})
async def update_profile(
    data: ProfileUpdate, session: SessionDep, user: CurrentUser
) -> db_models.User:
    """Change the email address (it is unverified again); 409 if another account has it."""
    return await user_service.update_profile(session, user=user, data=data)


@router.delete("", status_code=204, responses=_BODY)
async def delete_account(
    data: AccountDeletion,
    session: SessionDep,
    settings: SettingsDep,
    jobs: JobsDep,
    user: CurrentUser,
) -> Response:
    """Delete the account and everything it owns (tasks, files and their blobs, sessions)."""
    keys = await user_service.delete_account(
        session, user=user, password=data.password, cost=settings.hash_cost
    )
    if keys:
        await defer(jobs, "delete_blobs", keys=keys)
    return Response(status_code=204)


@router.patch("/change-password", response_model=Notice, responses=_BODY)
async def change_password(
    data: PasswordChange,
    session: SessionDep,
    settings: SettingsDep,
    principal: AccountPrincipal,
    user: CurrentUser,
) -> Notice:
    """Change the password (400 if the current one is wrong); every other session ends."""
    await user_service.change_password(
        session,
        user=user,
        principal=principal,
        current=data.current_password,
        new=data.new_password,
        settings=settings,
    )
    return Notice(message="Password changed; your other sessions have ended")


@router.get("/sessions", response_model=list[SessionRead])
async def list_sessions(
    session: SessionDep, principal: AccountPrincipal, user: CurrentUser
) -> Sequence[SessionRead]:
    """The caller's login sessions, oldest first; `current` marks this one."""
    return await session_service.list_sessions(session, principal=principal)


@router.delete("/sessions/{session_id}", status_code=204, responses=error_responses(404, 422))
async def end_session(
    session_id: SessionID,
    session: SessionDep,
    settings: SettingsDep,
    principal: AccountPrincipal,
    user: CurrentUser,
) -> Response:
    """End one of the caller's sessions: its tokens stop working at once."""
    await session_service.end_session(
        session, principal=principal, session_id=session_id, settings=settings
    )
    return Response(status_code=204)


@router.post("/tokens", status_code=201, response_model=ApiTokenCreated, responses=_BODY)
async def create_api_token(
    data: ApiTokenCreate, session: SessionDep, user: CurrentUser
) -> ApiTokenCreated:
    """Create a personal API token (`tm_pat_…`) with scopes; its secret is shown only here."""
    return await api_tokens.create_token(session, user_id=user.id, data=data)


@router.get("/tokens", response_model=list[ApiTokenRead])
async def list_api_tokens(session: SessionDep, user: CurrentUser) -> Sequence[ApiTokenRead]:
    """The caller's personal API tokens, without their secrets, with `last_used_at`."""
    return await api_tokens.list_tokens(session, user_id=user.id)


@router.delete("/tokens/{token_id}", status_code=204, responses=error_responses(404, 422))
async def revoke_api_token(
    token_id: TokenID, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> Response:
    """Revoke a personal API token: it stops working at once."""
    await api_tokens.revoke_token(session, user_id=user.id, token_id=token_id, settings=settings)
    return Response(status_code=204)
