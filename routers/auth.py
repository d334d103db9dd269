"""Registration and login."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Header, Request, Response
from fastapi.routing import APIRoute

import db_models
from account_models import Notice, RefreshRequest, ResetRequest, ResetVerify
from dependencies import (
    AccountPrincipal,
    CurrentUser,
    JobsDep,
    SecretKey,
    SessionDep,
    SettingsDep,
)
from exceptions import UnsupportedMediaTypeError
from jobs.engine import defer
from models import NUL_FREE, LoginRequest, Token, TokenForm, UserCreate, UserRead
from openapi_docs import error_responses
from rate_limit_config import active_limit, email_key, limiter
from services import account_links
from services import sessions as session_service
from services import users as user_service

_FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 8  # grant_type, username, password, scope, client_id, client_secret, spare
# Bytes as sent: a field of 1000 characters, each percent-encoded from 4 UTF-8 bytes, is 12 000.
MAX_FORM_FIELD_BYTES = 16 * 1024


class _BoundedFormRoute(APIRoute):
    """A form route whose body is parsed with bounds before FastAPI reads it (the request keeps
    the parsed form): at most MAX_FORM_FIELDS fields of MAX_FORM_FIELD_BYTES each, no files, and
    only as application/x-www-form-urlencoded, the one type the OAuth2 password grant has (so
    no multipart part headers to bound)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            if request.method == "POST":
                media_type = request.headers.get("content-type", "").split(";")[0].strip()
                if media_type.lower() != _FORM:
                    raise UnsupportedMediaTypeError(f"Send the form as {_FORM}")
                await request.form(
                    max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_FIELD_BYTES
                )
            return await handler(request)

        return bounded


router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(429, 503))

# /auth/login and /auth/token are two doors to one check: they share one login budget.
_login_limit = limiter.shared_limit(active_limit("login"), scope="login")
# The device a session was started from, as the sessions list shows it.
UserAgent = Annotated[
    str | None,
    Header(alias="User-Agent", max_length=1000, pattern=NUL_FREE, include_in_schema=False),
]


@router.post(
    "/register",
    status_code=201,
    response_model=UserRead,
    responses=error_responses(400, 409, 413, 422),
)
@limiter.limit(active_limit("register"))
async def register(
    request: Request,
    data: UserCreate,
    session: SessionDep,
    settings: SettingsDep,
) -> db_models.User:
    """Create an account."""
    return await user_service.register_user(session, data=data, cost=settings.hash_cost)


@router.post("/login", response_model=Token, responses=error_responses(400, 401, 413, 422))
@_login_limit
async def login(
    request: Request,
    credentials: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    secret: SecretKey,
    user_agent: UserAgent = None,
) -> Token:
    """Start a session: a username (any case) and password (JSON) for an access token and a
    refresh token."""
    return await user_service.login(
        session,
        username=credentials.username,
        password=credentials.password,
        user_agent=user_agent,
        settings=settings,
        secret=secret,
    )


@_login_limit
async def token(
    request: Request,
    form: Annotated[TokenForm, Form()],
    session: SessionDep,
    settings: SettingsDep,
    secret: SecretKey,
    user_agent: UserAgent = None,
) -> Token:
    """OAuth2 password flow (form fields): what the Authorize button in /docs uses."""
    return await user_service.login(
        session,
        username=form.username,
        password=form.password,
        user_agent=user_agent,
        settings=settings,
        secret=secret,
    )


router.add_api_route(
    "/token",
    token,
    methods=["POST"],
    response_model=Token,
    responses=error_responses(400, 401, 413, 415, 422),
    route_class_override=_BoundedFormRoute,
)


# The rest of /auth, on a router main.py includes after the task and file routers: every
# request is matched against the routes in order, and these must not cost GET /tasks/{id}.
sessions_router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(429, 503))


# The default limit only: a refresh token (256 random bits) cannot be guessed, and a client
# behind a shared address must not be logged out by its neighbours' logins.
@sessions_router.post(
    "/refresh", response_model=Token, responses=error_responses(400, 401, 413, 422)
)
async def refresh(
    body: RefreshRequest,
    session: SessionDep,
    settings: SettingsDep,
    secret: SecretKey,
) -> Token:
    """Spend a refresh token for a new pair; a spent one presented again ends its session."""
    return await session_service.refresh(
        session, refresh_token=body.refresh_token, settings=settings, secret=secret
    )


@sessions_router.post("/logout", status_code=204, responses=error_responses(401, 403))
async def logout(
    session: SessionDep, settings: SettingsDep, principal: AccountPrincipal, user: CurrentUser
) -> Response:
    """End this session: its refresh token and access token stop working at once."""
    await session_service.logout(session, principal=principal, settings=settings)
    return Response(status_code=204)


@sessions_router.post(
    "/password-reset/request",
    status_code=202,
    response_model=Notice,
    responses=error_responses(400, 413, 422),
)
@limiter.limit(active_limit("password_reset"))
async def request_password_reset(
    request: Request,
    body: ResetRequest,
    background: BackgroundTasks,
    session: SessionDep,
    jobs: JobsDep,
) -> Notice:
    """Email a reset link, if the address has an account (the answer is the same either way)."""
    await limiter.hit(
        request, active_limit("password_reset"), "password_reset", key=email_key(body.email)
    )
    user_id = await account_links.request_reset(session, email=str(body.email))
    if user_id is not None:  # after the response: its time is the same either way
        background.add_task(defer, jobs, "link_mail", user_id=user_id, purpose=account_links.RESET)
    return Notice(message="If the address has an account, a reset link is on its way")


@sessions_router.post(
    "/password-reset/verify", response_model=Notice, responses=error_responses(400, 413, 422)
)
async def reset_password(body: ResetVerify, session: SessionDep, settings: SettingsDep) -> Notice:
    """Set a new password with a reset token; every session of the account ends."""
    await account_links.reset_password(
        session, token=body.token, new_password=body.new_password, settings=settings
    )
    return Notice(message="Password changed; log in again")
