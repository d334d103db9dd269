"""Comment endpoints: comment on a task and list its comments; edit or delete one by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from dependencies import (
    DeletableComment,
    EditableComment,
    ReadableTask,
    TaskReader,
    TaskStoreDep,
    TaskWriter,
)
from idempotency import IdempotentRoute, idempotent
from openapi_docs import error_responses, with_headers
from routers.paging import pagination_headers
from services import comments as comment_service
from sharing_models import CommentCreate, CommentRead, CommentUpdate, Paging

task_comments_router = APIRouter(
    prefix="/tasks/{task_id}/comments",
    tags=["comments"],
    responses=error_responses(401, 429, 503),
    route_class=IdempotentRoute,
)
comments_router = APIRouter(
    prefix="/comments", tags=["comments"], responses=error_responses(401, 429, 503)
)
_OWNED = error_responses(403, 404, 422)
_BODY = error_responses(400, 413, 422)


@task_comments_router.post(
    "", status_code=201, response_model=CommentRead, responses={**_OWNED, **_BODY}
)
@idempotent
async def create_comment(
    data: CommentCreate,
    task: ReadableTask,
    store: TaskStoreDep,
    user_id: TaskWriter,
) -> CommentRead:
    """Comment on a task the caller can read (its owner is emailed)."""
    return await comment_service.create_comment(
        store,
        task=task,
        user_id=user_id,
        content=data.content,
    )


@task_comments_router.get(
    "",
    response_model=list[CommentRead],
    responses={**with_headers(200, "X-Total-Count", "Link"), **_OWNED},
)
async def list_comments(
    request: Request,
    paging: Annotated[Paging, Query()],
    task: ReadableTask,
    store: TaskStoreDep,
    user_id: TaskReader,
    response: Response,
) -> list[CommentRead]:
    """List a task's comments, oldest first, paged."""
    comments, total = await comment_service.list_comments(
        store, user_id=user_id, task_id=task["id"], paging=paging
    )
    headers = pagination_headers(request, total=total, skip=paging.skip, limit=paging.limit)
    response.headers.update(headers)
    return comments


@comments_router.patch("/{comment_id}", response_model=CommentRead, responses={**_OWNED, **_BODY})
async def update_comment(
    data: CommentUpdate, comment: EditableComment, store: TaskStoreDep
) -> CommentRead:
    """Change the text of one of the caller's comments."""
    return await comment_service.update_comment(store, comment=comment, content=data.content)


@comments_router.delete("/{comment_id}", status_code=204, responses=_OWNED)
async def delete_comment(
    comment: DeletableComment, store: TaskStoreDep, user_id: TaskWriter
) -> None:
    """Delete a comment: its author, or the task's owner."""
    await comment_service.delete_comment(store, comment=comment, actor_id=user_id)
