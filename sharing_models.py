"""Pydantic schemas of sharing, comments, people and notification preferences (issue #13);
the task schemas they build on are in models.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from models import MAX_ID, NUL_FREE, InputModel, TaskRead, Username

Permission = Literal["view", "edit"]
_PERMISSION = Field(description="view: read and comment; edit: also change it, its tags, files")
MAX_SEARCH_RESULTS = 50


class UserRef(BaseModel):
    """Another user as sharing shows them: never their email."""

    id: int
    username: str


class ShareCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"shared_with_username": "bob", "permission": "view"}]}
    )

    shared_with_username: Username
    permission: Annotated[Permission, _PERMISSION]


class ShareUpdate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"permission": "edit"}]})

    permission: Annotated[Permission, _PERMISSION]


class ShareRead(BaseModel):
    task_id: int
    shared_with: UserRef
    permission: Permission
    created_at: datetime


class SharedTaskRead(TaskRead):
    """A task shared with the caller: the task, what the share allows, and whose it is."""

    permission: Permission
    owner: UserRef


CommentText = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=NUL_FREE)]


class CommentCreate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"content": "Done by Friday?"}]})

    content: CommentText


class CommentUpdate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"content": "Done by Monday?"}]})

    content: CommentText


class CommentRead(BaseModel):
    id: int
    task_id: int
    author: UserRef
    content: str
    created_at: datetime
    updated_at: datetime


class Paging(BaseModel):
    """Query parameters of a paged list other than GET /tasks."""

    skip: int = Field(default=0, ge=0, le=MAX_ID, description="Items to skip (paging offset)")
    limit: int = Field(default=100, ge=1, le=100, description="Page size")


class UserSearch(BaseModel):
    """Query parameters of GET /users/search."""

    query: Annotated[str, StringConstraints(min_length=2, max_length=50, pattern=NUL_FREE)] = Field(
        description="The start of a username (2+ characters, any case)", examples=["al"]
    )
    limit: int = Field(
        default=10, ge=1, le=MAX_SEARCH_RESULTS, description="At most this many users"
    )


class NotificationPreferences(BaseModel):
    email_enabled: bool = Field(description="false: no email at all")
    task_shared_with_me: bool = Field(description="Mail me when a task is shared with me")
    task_completed: bool = Field(description="Mail me when a task of mine is completed")
    comment_on_my_task: bool = Field(description="Mail me when someone comments on my task")


class NotificationPreferencesUpdate(InputModel):
    """Only the preferences sent are changed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"task_completed": False}]})

    email_enabled: StrictBool = None  # type: ignore[assignment]  # "not sent"
    task_shared_with_me: StrictBool = None  # type: ignore[assignment]
    task_completed: StrictBool = None  # type: ignore[assignment]
    comment_on_my_task: StrictBool = None  # type: ignore[assignment]

    def changes(self) -> dict[str, bool]:
        return self.model_dump(exclude_unset=True)
