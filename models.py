"""Pydantic request and response schemas."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

MAX_ID = 2**31 - 1
MAX_TAGS_PER_TASK = 50
MAX_BULK_IDS = 1000


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


def _no_nul(value: str) -> str:
    # argon2id hashes every byte (no 72-byte rule any more). A NUL is refused here, not by a
    # pattern: the schema's `format: password` carries the rule, which the fuzz hooks
    # (scripts/fuzz/schemathesis_hooks.py) generate by.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _strip(value: str) -> str:
    return value.strip()


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date_only(value: object) -> object:
    # Lax parsing would read 0 or "0" as 1970-01-01; a date is YYYY-MM-DD and nothing else.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("must be a date in YYYY-MM-DD form")
    if not isinstance(value, str | date) or isinstance(value, datetime):
        raise ValueError("must be a date in YYYY-MM-DD form")
    return value


# Whitespace spelled out: `\s` differs between Python's re (which counts \x1c-\x1f and \x85) and
# the ECMA regexes a schema's reader uses (which count \ufeff), so a `\S` pattern documented and
# enforced different sets. This class is every character either calls whitespace.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# Text the database cannot store: PostgreSQL refuses NUL in text (SQLite would keep it), so every
# string a client sends is refused with it, by its pattern, identically on both (a 422 naming
# the field). Lone surrogates never get this far: the JSON parser refuses them.
NUL_FREE = r"^[^\x00]*$"
# The schema's pattern says what the stripped value needs (a visible character), so the documented
# constraints and the accepted values are the same set.
Title = Annotated[
    str,
    StringConstraints(max_length=200, pattern=rf"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"),
    AfterValidator(_strip),
]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=NUL_FREE)]
Tag = Annotated[
    str,
    StringConstraints(
        max_length=50,
        pattern=rf"^[^\x00-\x1f\x7f]*[^{_SPACE}\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
    ),
    AfterValidator(_strip),
]
# A tag as a path segment: what a stored tag can be (no control characters), unstripped.
TAG_PATH = r"^[^\x00-\x1f\x7f]+$"
ISODate = Annotated[date, BeforeValidator(_iso_date_only)]

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_datetime_only(value: object) -> object:
    # Lax parsing would read 0.5 or "0" as seconds since 1970; a time is ISO 8601 text.
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be a date and time in ISO 8601 form, e.g. 2026-12-01T09:30:00Z")
    return value


# A date and time with its UTC offset (RFC 3339, the schema's `date-time`), as text only.
ISODateTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime_only)]
TagList = Annotated[list[Tag], Field(max_length=MAX_TAGS_PER_TASK), AfterValidator(_unique)]


def _json_number(value: object) -> object:
    # A JSON integer, or a number JSON Schema calls one (1.0); never "1" or true, which lax
    # validation would read as 1.
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


# Never past the column's range.
ID = Annotated[
    int,
    Field(gt=0, le=MAX_ID),
    BeforeValidator(_json_number),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.@+-]+$"),
]
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=100),
    AfterValidator(_no_nul),
    Field(
        json_schema_extra={"format": "password"},
        description="8-100 characters (every byte counts), no NUL",
    ),
]
# A password to check, not to set: whatever an older rule allowed (1-100 characters, no NUL).
GivenPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=NUL_FREE),
    Field(json_schema_extra={"format": "password"}),
]


class InputModel(BaseModel):
    # A client can never set server-owned fields such as user_id or id. Patterns run on Python's
    # `re`, whose idea of whitespace is str.strip()'s (Rust's regex differs on a few characters).
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


# --- users and tokens ---------------------------------------------------------------------------


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# email-validator refuses special-use domains (.test, .local, ...: nothing can be delivered
# there); the schema says so with `not` + a plain pattern (no look-around, no inline flags).
_SPECIAL_USE_DOMAIN = "[@.](?:{})$".format(
    "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
)
Email = Annotated[
    EmailStr,
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": 254,
            "not": {"pattern": _SPECIAL_USE_DOMAIN},
        }
    ),
    Field(max_length=254),
]


class UserCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "alice",
                    "email": "alice@example.com",
                    "password": "correct-horse-battery",
                }
            ]
        }
    )

    username: Username
    email: Email
    password: Password


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    created_at: datetime


class LoginRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "alice", "password": "correct-horse-battery"}]}
    )

    username: Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=NUL_FREE)]
    password: GivenPassword


class TokenForm(BaseModel):
    """The OAuth2 password grant's form (RFC 6749 4.3.2), as /docs' Authorize sends it."""

    model_config = ConfigDict(extra="ignore", regex_engine="python-re")

    grant_type: Annotated[str, StringConstraints(pattern=r"^password$")] = "password"
    username: Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=NUL_FREE)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NUL_FREE)]
    scope: Annotated[str, StringConstraints(max_length=1000, pattern=NUL_FREE)] = ""


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(
        description="Opaque, single-use: POST it to /auth/refresh for a new pair"
    )


# --- tasks --------------------------------------------------------------------------------------


class TaskCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "Write the quarterly report",
                    "description": "Figures from the finance export",
                    "priority": "high",
                    "due_date": "2030-01-31",
                    "tags": ["work", "q3/finance"],
                }
            ]
        }
    )

    title: Title
    description: Description | None = None
    completed: StrictBool = False
    priority: Priority = Priority.MEDIUM
    due_date: ISODate | None = None
    tags: TagList = Field(default_factory=list)


class TaskUpdate(InputModel):
    """Partial update: only the fields sent are changed, each validated as on create.

    The `None` defaults only mean "not sent" (defaults are not validated); a client's explicit
    null is validated against the field's type, so it is refused for title, completed, priority
    and tags, and allowed for description and due_date. The schema says the same.
    """

    # One field: a blind "Execute" in /docs changes that field only, not every field.
    model_config = ConfigDict(json_schema_extra={"examples": [{"completed": True}]})

    title: Title = None  # type: ignore[assignment]  # "not sent"; see the docstring
    description: Description | None = None
    completed: StrictBool = None  # type: ignore[assignment]
    priority: Priority = None  # type: ignore[assignment]
    due_date: ISODate | None = None
    tags: TagList = None  # type: ignore[assignment]

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
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"task_ids": [1, 2], "updates": {"priority": "low"}}]}
    )

    task_ids: Annotated[list[ID], Field(min_length=1, max_length=MAX_BULK_IDS)]
    updates: Annotated[
        TaskUpdate,
        Field(description="At least one field (an empty object is a 400)"),
        WithJsonSchema(
            {"allOf": [{"$ref": "#/components/schemas/TaskUpdate"}], "minProperties": 1}
        ),
    ]


class TaskFilters(BaseModel):
    """Query parameters of `GET /tasks`."""

    completed: bool | None = Field(default=None, description="Only completed (true) or open tasks")
    priority: Priority | None = Field(default=None, description="Only tasks of this priority")
    tag: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=50, pattern=NUL_FREE)]
        | None
    ) = Field(default=None, description="Only tasks carrying exactly this tag", examples=["work"])
    overdue: bool | None = Field(
        default=None,
        description="true: due before today (UTC) and not completed; false: every other task",
    )
    search: Annotated[str, StringConstraints(max_length=200, pattern=NUL_FREE)] | None = Field(
        default=None,
        description="Case-insensitive substring of title or description (% and _ are literal)",
        examples=["report"],
    )
    created_after: ISODate | None = Field(default=None, description="Inclusive day (UTC)")
    created_before: ISODate | None = Field(default=None, description="Inclusive day (UTC)")
    sort_by: SortField = Field(
        default=SortField.ID,
        description="Sort key (priority: low < medium < high; missing due dates last)",
    )
    sort_order: Literal["asc", "desc"] = Field(
        default="asc", description="Sort direction; ties are always broken by id"
    )
    skip: int = Field(default=0, ge=0, le=MAX_ID, description="Tasks to skip (paging offset)")
    limit: int = Field(default=100, ge=1, le=100, description="Page size")


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
    storage: Literal["ok", "unavailable"]
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
