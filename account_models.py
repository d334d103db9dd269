"""Pydantic schemas of accounts and sessions: profile, sessions, reset and verification."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from models import NUL_FREE, Email, GivenPassword, InputModel, Password

# What we issue (token_urlsafe): ASCII letters, digits, `-` and `_`. Anything else is no token.
OpaqueToken = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$"),
    Field(description="A token as issued (opaque)", examples=["kTq3-_examplE0pAqUe7oKEn"]),
]


class RefreshRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "kTq3-_examplE0pAqUe7oKEn"}]}
    )

    refresh_token: OpaqueToken


class Profile(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    email_verified: bool
    created_at: datetime


class ProfileUpdate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "alice@example.org"}]})

    email: Email


class AccountDeletion(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"password": "correct-horse-battery"}]}
    )

    password: GivenPassword


class PasswordChange(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"current_password": "correct-horse-battery", "new_password": "staple-42-horse"}
            ]
        }
    )

    current_password: GivenPassword
    new_password: Password


class SessionRead(BaseModel):
    id: int
    created_at: datetime
    last_used_at: datetime | None
    user_agent: str | None
    current: bool = Field(description="Whether this request was made in this session")


class ResetRequest(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "alice@example.com"}]})

    email: Email


class ResetVerify(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"token": "kTq3-_examplE0pAqUe7oKEn", "new_password": "staple-42-horse"}]
        }
    )

    token: OpaqueToken
    new_password: Password


class VerifyRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"token": "kTq3-_examplE0pAqUe7oKEn"}]}
    )

    token: OpaqueToken


class Verified(BaseModel):
    email_verified: bool = True


class Notice(BaseModel):
    message: str


class TokenScope(StrEnum):
    """What a personal API token may do (checked in services.access, nowhere else)."""

    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    SHARES_WRITE = "shares:write"
    WEBHOOKS_WRITE = "webhooks:write"


class ApiTokenCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "backup script", "scopes": ["tasks:read"], "expires_in_days": 90}]
        }
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NUL_FREE)]
    scopes: Annotated[list[TokenScope], Field(min_length=1, max_length=len(TokenScope))]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class ApiTokenRead(BaseModel):
    id: int
    name: str
    scopes: list[TokenScope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(BaseModel):
    id: int
    name: str
    scopes: list[TokenScope]
    token: str = Field(description="The token (`tm_pat_…`): shown only here, stored hashed")
    created_at: datetime
    expires_at: datetime | None
