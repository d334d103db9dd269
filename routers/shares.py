"""Sharing endpoints: share a task, list, change and remove its shares, and the tasks shared
with the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from dependencies import (
    SHARE_WRITE_SCOPE,
    OwnedTask,
    ReadableTask,
    ShareWriter,
    TaskReader,
    TaskStoreDep,
)
from idempotency import IdempotentRoute, idempotent
from models import TaskFilters, Username
from openapi_docs import error_responses, with_headers
from routers.paging import pagination_headers
from services import shares as share_service
from services.task_json import shared_tasks_json
from sharing_models import ShareCreate, SharedTaskRead, ShareRead, ShareUpdate

router = APIRouter(
    prefix="/tasks",
    tags=["sharing"],
    responses=error_responses(401, 429, 503),
    route_class=IdempotentRoute,
)
_OWNED = error_responses(403, 404, 422)
_BODY = error_responses(400, 413, 422)
ShareUsername = Annotated[Username, Path(description="The user the task is shared with")]


@router.get(
    "/shared-with-me",
    response_model=list[SharedTaskRead],
    responses={**with_headers(200, "X-Total-Count", "Link"), **error_responses(403, 422)},
)
async def list_shared_with_me(
    request: Request,
    filters: Annotated[TaskFilters, Query()],
    store: TaskStoreDep,
    user_id: TaskReader,
) -> Response:
    """List the tasks others shared with the caller, each with its permission and owner:
    filtered, sorted and paged like GET /tasks."""
    tasks, total = await share_service.list_shared_with_me(store, user_id=user_id, filters=filters)
    headers = pagination_headers(request, total=total, skip=filters.skip, limit=filters.limit)
    return Response(shared_tasks_json(tasks), media_type="application/json", headers=headers)


@router.post(
    "/{task_id:int}/share",
    status_code=201,
    response_model=ShareRead,
    responses={**_OWNED, **_BODY, **error_responses(409)},
    dependencies=[SHARE_WRITE_SCOPE],
)
@idempotent
async def share_task(
    data: ShareCreate,
    task: OwnedTask,
    store: TaskStoreDep,
) -> ShareRead:
    """Share one of the caller's tasks with another user, to view or to edit."""
    return await share_service.share_task(
        store,
        task=task,
        username=data.shared_with_username,
        permission=data.permission,
    )


@router.get("/{task_id:int}/shares", response_model=list[ShareRead], responses=_OWNED)
async def list_shares(task: OwnedTask, store: TaskStoreDep) -> list[ShareRead]:
    """List whom one of the caller's tasks is shared with."""
    return await share_service.list_shares(store, task_id=task["id"])


@router.put(
    "/{task_id:int}/share/{username}",
    response_model=ShareRead,
    responses={**_OWNED, **_BODY},
    dependencies=[SHARE_WRITE_SCOPE],
)
async def update_share(
    username: ShareUsername, data: ShareUpdate, task: OwnedTask, store: TaskStoreDep
) -> ShareRead:
    """Change what a share of one of the caller's tasks allows."""
    return await share_service.update_share(
        store, task=task, username=username, permission=data.permission
    )


@router.delete("/{task_id:int}/share/{username}", status_code=204, responses=_OWNED)
async def delete_share(
    username: ShareUsername, task: ReadableTask, store: TaskStoreDep, user_id: ShareWriter
) -> None:
    """Remove a share: the owner removes any, a recipient their own (leaving the task)."""
    await share_service.delete_share(store, task=task, user_id=user_id, username=username)
