"""Pydantic request and response schemas."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

MAX_ID = 2**31 - 1
MAX_BCRYPT_BYTES = 72
MAX_TAGS_PER_TASK = 50
MAX_BULK_IDS = 1000

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class SortField(StrEnum):
    ID = "id"
    TITLE = "title"
    PRIORITY = "priority"
    COMPLETED = "completed"
    CREATED_AT = "created_at"
    DUE_DATE = "due_date"


def _no_control_chars(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters")
    return value


def _fits_bcrypt(value: str) -> str:
    # bcrypt ignores everything past 72 bytes; refusing is honest, truncating is not.
    if len(value.encode()) > MAX_BCRYPT_BYTES:
        raise ValueError(f"must be at most {MAX_BCRYPT_BYTES} bytes in UTF-8")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=1000)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(_no_control_chars),
]
TagList = Annotated[list[Tag], Field(max_length=MAX_TAGS_PER_TASK), AfterValidator(_unique)]
ID = Annotated[int, Field(gt=0, le=MAX_ID)]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.@+-]+$"),
]
Password = Annotated[
    str, StringConstraints(min_length=8, max_length=100), AfterValidator(_fits_bcrypt)
]


class InputModel(BaseModel):
    # A client can never set server-owned fields such as user_id or id.
    model_config = ConfigDict(extra="forbid")


# --- users and tokens ---------------------------------------------------------------------------


class UserCreate(InputModel):
    username: Username
    email: Annotated[EmailStr, Field(max_length=254)]
    password: Password


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    created_at: datetime


class LoginRequest(InputModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


# --- tasks --------------------------------------------------------------------------------------


class TaskCreate(InputModel):
    title: Title
    description: Description | None = None
    completed: bool = False
    priority: Priority = Priority.MEDIUM
    due_date: date | None = None
    tags: TagList = Field(default_factory=list)


_NOT_NULLABLE = ("title", "completed", "priority", "tags")


class TaskUpdate(InputModel):
    """Partial update: only the fields sent are changed, each validated as on create."""

    title: Title | None = None
    description: Description | None = None
    completed: bool | None = None
    priority: Priority | None = None
    due_date: date | None = None
    tags: TagList | None = None

    @model_validator(mode="after")
    def _required_fields_are_not_null(self) -> TaskUpdate:
        nulls = [
            f for f in _NOT_NULLABLE if f in self.model_fields_set and getattr(self, f) is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} may not be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    completed: bool
    priority: Priority
    created_at: datetime
    updated_at: datetime
    due_date: date | None
    tags: list[str]
    user_id: int


class FileRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    original_filename: str
    file_size: int
    content_type: str
    sha256: str
    uploaded_at: datetime


class BulkUpdate(InputModel):
    task_ids: Annotated[list[ID], Field(min_length=1, max_length=MAX_BULK_IDS)]
    updates: TaskUpdate


class TaskFilters(BaseModel):
    """Query parameters of `GET /tasks`."""

    completed: bool | None = None
    priority: Priority | None = None
    tag: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)] | None = None
    overdue: bool | None = None
    search: Annotated[str, StringConstraints(max_length=200)] | None = None
    created_after: date | None = Field(default=None, description="Inclusive day (UTC)")
    created_before: date | None = Field(default=None, description="Inclusive day (UTC)")
    sort_by: SortField = SortField.ID
    sort_order: Literal["asc", "desc"] = "asc"
    skip: int = Field(default=0, ge=0, le=MAX_ID)
    limit: int = Field(default=100, ge=1, le=100)


class TaskStats(BaseModel):
    total: int
    completed: int
    incomplete: int
    completion_rate: float = Field(ge=0.0, le=1.0)
    by_priority: dict[Priority, int]
    by_tag: dict[str, int]
    overdue: int


# --- service ------------------------------------------------------------------------------------


class Message(BaseModel):
    message: str
    status: str


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["ok", "unavailable"]
    cache: Literal["ok", "unavailable", "memory"]
    version: str


class Version(BaseModel):
    version: str
    api: str = "v1"


class ErrorBody(BaseModel):
    """Every error response has this shape; some add fields such as `field` or `task_id`."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    detail: list[dict[str, Any]] | None = None


_ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid or expired token",
    403: "The resource belongs to another user",
    404: "Not found",
    409: "Conflict",
    412: "If-Match names a version that is no longer current",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Rate limit exceeded",
    502: "A backing service failed",
    503: "A backing service is unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the standard error body for each code."""
    return {code: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}
