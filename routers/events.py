"""The views of the event record: the change feed (GET /changes) and the activity log."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from db_models import utcnow
from dependencies import ReadableTask, SettingsDep, TaskReader, TaskStoreDep
from events_models import ActivityEntry, ActivityStats, ChangesPage
from models import ISODateTime
from openapi_docs import error_responses, with_headers
from routers.paging import pagination_headers
from services import activity, feed
from services.events import Position
from sharing_models import Paging

changes_router = APIRouter(
    prefix="/changes", tags=["events"], responses=error_responses(401, 403, 429, 503)
)
activity_router = APIRouter(
    prefix="/activity", tags=["events"], responses=error_responses(401, 403, 429, 503)
)
_PAGED = with_headers(200, "X-Total-Count", "Link")


class ResourceType(StrEnum):
    TASK = "task"
    FILE = "file"
    SHARE = "share"
    COMMENT = "comment"


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    COMPLETED = "completed"
    UPLOADED = "uploaded"


class Period(BaseModel):
    start_date: ISODateTime | None = Field(
        default=None, description="From this time (inclusive), with its UTC offset"
    )
    end_date: ISODateTime | None = Field(
        default=None, description="Up to this time (inclusive), with its UTC offset"
    )


class ActivityFilters(Paging, Period):
    resource_type: ResourceType | None = Field(
        default=None, description="Only events of this kind of resource"
    )
    action: Action | None = Field(default=None, description="Only events of this action")


@changes_router.get("", response_model=ChangesPage, responses=error_responses(400, 410, 422))
async def list_changes(
    store: TaskStoreDep,
    settings: SettingsDep,
    user_id: TaskReader,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A `next_cursor` from an earlier answer; none: from the oldest event kept",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events per answer")] = 100,
) -> Response:
    """The events visible to the caller (their tasks', and those shared with them while
    shared), oldest first. Follow `next_cursor`; `has_more` false: caught up for now."""
    now = utcnow()
    position = Position() if cursor is None else feed.decode_cursor(cursor, settings, now)
    rows, position, more = await feed.read_feed(
        store.engine, user_id=user_id, position=position, limit=limit
    )
    body = feed.feed_body(rows, feed.encode_cursor(position, now), more)
    return Response(body, media_type="application/json")


@activity_router.get(
    "", response_model=list[ActivityEntry], responses={**_PAGED, **error_responses(422)}
)
async def list_activity(
    request: Request,
    filters: Annotated[ActivityFilters, Query()],
    store: TaskStoreDep,
    user_id: TaskReader,
    response: Response,
) -> list[ActivityEntry]:
    """The caller's timeline: every event visible to them, newest first, paged like GET /tasks."""
    entries, total = await activity.timeline(
        store.engine, user_id=user_id, resource_type=filters.resource_type,
        action=filters.action, start=filters.start_date, end=filters.end_date,
        skip=filters.skip, limit=filters.limit,
    )  # fmt: skip
    response.headers.update(
        pagination_headers(request, total=total, skip=filters.skip, limit=filters.limit)
    )
    return entries


@activity_router.get("/stats", response_model=ActivityStats, responses=error_responses(422))
async def activity_stats(
    period: Annotated[Period, Query()], store: TaskStoreDep, user_id: TaskReader
) -> ActivityStats:
    """How many events visible to the caller there were, in all and by type."""
    return await activity.stats(
        store.engine, user_id=user_id, start=period.start_date, end=period.end_date
    )


@activity_router.get(
    "/tasks/{task_id:int}",
    response_model=list[ActivityEntry],
    responses={**_PAGED, **error_responses(404, 422)},
)
async def task_activity(
    request: Request,
    task: ReadableTask,
    paging: Annotated[Paging, Query()],
    store: TaskStoreDep,
    response: Response,
) -> list[ActivityEntry]:
    """The task's whole history, newest first, for anyone who can read the task."""
    entries, total = await activity.task_history(
        store.engine, task_id=task["id"], skip=paging.skip, limit=paging.limit
    )
    response.headers.update(
        pagination_headers(request, total=total, skip=paging.skip, limit=paging.limit)
    )
    return entries
