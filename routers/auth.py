"""Registration and login."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.routing import APIRoute

import db_models
from dependencies import SecretKey, SessionDep, SettingsDep
from exceptions import UnsupportedMediaTypeError
from models import LoginRequest, Token, TokenForm, UserCreate, UserRead
from openapi_docs import error_responses
from rate_limit_config import active_limit, limiter
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
    return await user_service.register_user(
        session, data=data, bcrypt_rounds=settings.bcrypt_rounds
    )


@router.post("/login", response_model=Token, responses=error_responses(400, 401, 413, 422))
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


@_login_limit
async def token(
    request: Request,
    form: Annotated[TokenForm, Form()],
    session: SessionDep,
    settings: SettingsDep,
    secret: SecretKey,
) -> Token:
    """OAuth2 password flow (form fields): what the Authorize button in /docs uses."""
    return await user_service.login(
        session, username=form.username, password=form.password, settings=settings, secret=secret
    )


router.add_api_route(
    "/token",
    token,
    methods=["POST"],
    response_model=Token,
    responses=error_responses(400, 401, 413, 415, 422),
    route_class_override=_BoundedFormRoute,
)
