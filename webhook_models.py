"""Pydantic schemas of webhooks and their deliveries (README "Webhooks")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StringConstraints,
)

from event_tables import EventType
from models import NUL_FREE, InputModel

ALL_EVENTS = "*"
TEST_EVENT = "webhook.test"
DeliveryStatus = Literal["pending", "succeeded", "failed"]
_URL_EXAMPLE = "https://example.com/hooks/tasks"
_SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# What a filter may name: the schema's enum and the validator's check and message.
EVENT_NAMES = (ALL_EVENTS, *EventType)


def _known_events(events: list[str]) -> list[str]:
    """Each an event type or "*"; "*" alone stands for all, duplicates go."""
    unknown = [name for name in events if name not in EVENT_NAMES]
    if unknown:
        allowed = ", ".join(EVENT_NAMES)
        raise ValueError(f"unknown event type {unknown[0]!r}; one of: {allowed}")
    return [ALL_EVENTS] if ALL_EVENTS in events else list(dict.fromkeys(events))


WebhookURL = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000, pattern=NUL_FREE),
    Field(
        description="Where events are POSTed: https://, a host that resolves to public addresses"
        " only (WEBHOOK_ALLOW_PRIVATE_TARGETS=true also allows http:// and private hosts)",
        examples=[_URL_EXAMPLE],
    ),
]
# The names are checked by _known_events (its message lists them); the schema lists them too,
# so a client (or a generated one) knows the choices before it sends.
EventName = Annotated[
    str, StringConstraints(max_length=32), Field(json_schema_extra={"enum": list(EVENT_NAMES)})
]
EventTypes = Annotated[
    list[EventName],
    Field(
        min_length=1,
        max_length=len(EventType) + 1,
        description='The event types to send, or ["*"] for all of them',
        examples=[["task.completed", "comment.created"], ["*"]],
    ),
    AfterValidator(_known_events),
]
Description = Annotated[
    str,
    StringConstraints(max_length=500, pattern=NUL_FREE),
    Field(description="A note for yourself: what the endpoint is for"),
]


class WebhookCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": _URL_EXAMPLE, "events": ["*"], "description": "Team dashboard"}]
        }
    )

    url: WebhookURL
    events: EventTypes
    description: Description | None = None


class WebhookUpdate(InputModel):
    """Only the fields sent are changed; `enabled: true` also clears a disabled endpoint's
    `disabled_at` and `failing_since`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": True}]})

    url: WebhookURL = None  # type: ignore[assignment]  # None: "not sent" (exclude_unset)
    events: EventTypes = None  # type: ignore[assignment]
    description: Description | None = None
    enabled: StrictBool = None  # type: ignore[assignment]


_READ_EXAMPLE: dict[str, JsonValue] = {
    "id": 3, "url": _URL_EXAMPLE, "events": ["*"], "description": "Team dashboard",
    "enabled": True, "created_at": "2026-01-05T09:00:00Z", "failing_since": None,
    "disabled_at": None,
}  # fmt: skip


class WebhookRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_READ_EXAMPLE]})

    id: int
    url: str
    events: list[EventName] = Field(description='Event types sent, or ["*"]')
    description: str | None
    enabled: bool = Field(description="false: nothing is sent (disabled by you, or after"
                          " failing everything for WEBHOOK_DISABLE_AFTER_DAYS)")  # fmt: skip
    created_at: datetime
    failing_since: datetime | None = Field(
        description="Since when every delivery has failed (null: the last one succeeded)"
    )
    disabled_at: datetime | None = Field(description="When it was disabled, if it is")


class WebhookCreated(WebhookRead):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_READ_EXAMPLE, "secret": _SECRET_EXAMPLE}]}
    )

    secret: str = Field(
        description="The signing secret (Standard Webhooks, `whsec_` + base64): shown only in"
        " this answer; keep it to verify `webhook-signature`"
    )


class DeliveryRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17, "event_id": 42, "event_type": "task.completed",
                    "status": "pending", "attempts": 1, "last_status_code": 500,
                    "last_error": "answered 500", "next_attempt_at": "2026-01-05T10:00:35Z",
                    "created_at": "2026-01-05T10:00:00Z",
                }
            ]
        }
    )  # fmt: skip

    id: int
    event_id: int | None = Field(description="The event sent (null for a `webhook.test`)")
    event_type: str = Field(description="The event's type, or `webhook.test`")
    status: DeliveryStatus = Field(
        description="pending: to be (re)tried at next_attempt_at; succeeded: a 2xx answer;"
        " failed: retries exhausted"
    )
    attempts: int = Field(description="Attempts made so far")
    last_status_code: int | None = Field(description="The last attempt's HTTP status, if any")
    last_error: str | None = Field(description="Why the last attempt failed, if it did")
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending only)")
    created_at: datetime
