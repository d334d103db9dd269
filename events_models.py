"""The change feed's and the activity log's bodies (GET /changes, GET /activity…)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from sharing_models import UserRef

_TASK: dict[str, JsonValue] = {
    "id": 7, "title": "Write report", "description": None, "completed": True,
    "priority": "high", "created_at": "2026-01-05T09:00:00Z",
    "updated_at": "2026-01-05T10:00:00Z", "due_date": None, "tags": ["work"], "user_id": 1,
}  # fmt: skip
_CHANGE: dict[str, JsonValue] = {
    "id": 42,
    "type": "task.completed",
    "occurred_at": "2026-01-05T10:00:00Z",
    "actor_id": 1,
    "data": {"task": _TASK, "changes": {"completed": {"old": False, "new": True}}},
}
_CURSOR = "MS4wLjQyLjE3Njc2MDcyMDA"


class Change(BaseModel):
    """One event: `data` as the event types describe (README "Change feed")."""

    id: int
    type: str
    occurred_at: datetime
    actor_id: int | None
    data: dict[str, Any]


class ChangesPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"changes": [_CHANGE], "next_cursor": _CURSOR, "has_more": False}]
        }
    )

    changes: list[Change]
    next_cursor: str = Field(description="Pass back as `cursor` to read what follows")
    has_more: bool = Field(description="More events follow now (read again at once)")


class ActivityEntry(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "actor": {"id": 1, "username": "alice"},
                    "action": "completed",
                    "resource_type": "task",
                    "resource_id": 7,
                    "task_id": 7,
                    "changes": _CHANGE["data"],
                    "created_at": "2026-01-05T10:00:00Z",
                }
            ]
        }
    )

    id: int
    actor: UserRef | None
    action: str
    resource_type: str
    resource_id: int | None
    task_id: int
    changes: dict[str, Any]
    created_at: datetime


class ActivityStats(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"total": 3, "by_type": {"task.created": 2, "task.completed": 1}}]
        }
    )

    total: int = Field(description="Visible events in the period")
    by_type: dict[str, int] = Field(description="Of these, how many of each event type")
