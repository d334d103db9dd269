"""Registration and login."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

import db_models
from dependencies import SecretKey, SessionDep, SettingsDep
from models import LoginRequest, Token, UserCreate, UserRead, error_responses
from rate_limit_config import active_limit, limiter
from services import users as user_service

router = APIRouter(prefix="/auth", tags=["auth"])

# /auth/login and /auth/token are two doors to one check: they share one login budget.
_login_limit = limiter.shared_limit(active_limit("login"), scope="login")


@router.post(
    "/register",
    status_code=201,
    response_model=UserRead,
    responses=error_responses(400, 409, 422, 429),
)
@limiter.limit(active_limit("register"))
async def register(
    request: Request,
    data: UserCreate,
    session: SessionDep,
    settings: SettingsDep,
) -> db_models.User:
    """Create an account."""
    return await user_service.register_user(
        session, data=data, bcrypt_rounds=settings.bcrypt_rounds
    )


@router.post("/login", response_model=Token, responses=error_responses(400, 401, 422, 429))
@_login_limit
async def login(
    request: Request,
    credentials: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    secret: SecretKey,
) -> Token:
    """Exchange a username and password (JSON) for a bearer token."""
    return await user_service.login(
        session,
        username=credentials.username,
        password=credentials.password,
        settings=settings,
        secret=secret,
    )


@router.post("/token", response_model=Token, responses=error_responses(400, 401, 422, 429))
@_login_limit
async def token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    secret: SecretKey,
) -> Token:
    """OAuth2 password flow (form fields): what the Authorize button in /docs uses."""
    return await user_service.login(
        session, username=form.username, password=form.password, settings=settings, secret=secret
    )
