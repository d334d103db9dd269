"""Task endpoints: CRUD, filters, bulk update, tags and statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response
from starlette.convertors import Convertor, register_url_convertor

from dependencies import (
    CacheDep,
    IfMatch,
    IfNoneMatch,
    ReadableTask,
    SettingsDep,
    TaskID,
    TaskReader,
    TaskStoreDep,
    TaskWriter,
    etag_of,
    not_modified,
)
from idempotency import IdempotentRoute, idempotent
from models import (
    TAG_PATH,
    BulkUpdate,
    TagList,
    TaskCreate,
    TaskFilters,
    TaskRead,
    TaskStats,
    TaskUpdate,
)
from openapi_docs import error_responses, with_headers
from rate_limit_config import active_limit, limiter
from routers.paging import pagination_headers
from services import stats as stats_service
from services import tasks as task_service
from services.task_json import task_json, tasks_json
from services.task_writes import TaskRow


class _TagConvertor(Convertor[str]):
    """A tag as the last path segment, whatever it holds: "/" (sent as %2F, decoded before
    routing) and any other character, so the tag's own pattern decides (422), not the router
    (Starlette's `path` stops at a newline, and its `$` then matches before it)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tag", _TagConvertor())

router = APIRouter(
    prefix="/tasks",
    tags=["tasks"],
    responses=error_responses(401, 403, 429, 503),
    route_class=IdempotentRoute,
)
_TASK = with_headers(200, "ETag")
_OWNED = error_responses(403, 404, 422)
# Routes with a JSON body also answer 400 when it cannot be parsed, 413 when it is too large.
_BODY = error_responses(400, 413, 422)
_CONDITIONAL = {**_TASK, **_OWNED, **error_responses(412)}
_CONDITIONAL_BODY = {**_CONDITIONAL, **_BODY}


_JSON = "application/json"


def _task_response(task: TaskRow, status_code: int = 200) -> Response:
    """A task with its ETag: the one way a route answers with a task."""
    headers = {"ETag": etag_of(task["version"])}
    return Response(task_json(task), status_code=status_code, media_type=_JSON, headers=headers)


@router.get(
    "",
    response_model=list[TaskRead],
    responses={**with_headers(200, "X-Total-Count", "Link"), **error_responses(422)},
)
async def list_tasks(
    request: Request,
    filters: Annotated[TaskFilters, Query()],
    store: TaskStoreDep,
    user_id: TaskReader,
) -> Response:
    """List the caller's tasks: filter, search, sort and page (a bare JSON array)."""
    tasks, total = await task_service.list_tasks(store, user_id=user_id, filters=filters)
    headers = pagination_headers(request, total=total, skip=filters.skip, limit=filters.limit)
    return Response(tasks_json(tasks), media_type=_JSON, headers=headers)


@router.post(
    "", status_code=201, response_model=TaskRead, responses={**with_headers(201, "ETag"), **_BODY}
)
@idempotent
@limiter.limit(active_limit("create_task"))
async def create_task(
    request: Request,
    data: TaskCreate,
    store: TaskStoreDep,
    user_id: TaskWriter,
) -> Response:
    """Create a task."""
    task = await task_service.create_task(store, user_id=user_id, data=data)
    return _task_response(task, status_code=201)


@router.get("/stats", response_model=TaskStats, responses=with_headers(200, "X-Cache"))
async def get_stats(
    store: TaskStoreDep, cache: CacheDep, user_id: TaskReader, settings: SettingsDep
) -> Response:
    """Statistics over the caller's tasks (cached; `X-Cache` says HIT or MISS)."""
    body, hit = await stats_service.get_stats(
        store, cache, user_id=user_id, ttl=settings.stats_cache_ttl
    )
    return Response(body, media_type=_JSON, headers={"X-Cache": "HIT" if hit else "MISS"})


@router.patch("/bulk", response_model=list[TaskRead], responses={**_BODY, **error_responses(404)})
@idempotent
async def bulk_update_tasks(
    data: BulkUpdate,
    store: TaskStoreDep,
    user_id: TaskWriter,
) -> Response:
    """Apply the same update to several tasks: all of them or none."""
    tasks = await task_service.bulk_update(
        store,
        user_id=user_id,
        task_ids=data.task_ids,
        changes=data.updates.changes(),
    )
    return Response(tasks_json(tasks), media_type=_JSON)


@router.get(
    "/{task_id:int}",
    response_model=TaskRead,
    responses={
        **_TASK,
        **_OWNED,
        **with_headers(304, "ETag", description="Not modified: If-None-Match names this version"),
    },
)
async def get_task(task: ReadableTask, if_none_match: IfNoneMatch = None) -> Response:
    """Return one of the caller's tasks (with an ETag; If-None-Match gives 304)."""
    if not_modified(if_none_match, task["version"]):
        return Response(status_code=304, headers={"ETag": etag_of(task["version"])})
    return _task_response(task)


@router.patch("/{task_id:int}", response_model=TaskRead, responses=_CONDITIONAL_BODY)
async def update_task(
    task_id: TaskID,
    data: TaskUpdate,
    store: TaskStoreDep,
    user_id: TaskWriter,
    if_match: IfMatch,
) -> Response:
    """Change some fields of a task, validated as on create; If-Match guards against lost
    updates (412); completing a task emails its owner."""
    task = await task_service.update_task(
        store,
        user_id=user_id,
        task_id=task_id,
        changes=data.changes(),
        allowed_versions=if_match,
    )
    return _task_response(task)


@router.delete("/{task_id:int}", status_code=204, responses={**_OWNED, **error_responses(412)})
async def delete_task(
    task_id: TaskID,
    store: TaskStoreDep,
    user_id: TaskWriter,
    if_match: IfMatch,
) -> None:
    """Delete a task with its tags and files (If-Match: only if still at that version)."""
    await task_service.delete_task(
        store,
        user_id=user_id,
        task_id=task_id,
        allowed_versions=if_match,
    )


@router.post("/{task_id:int}/tags", response_model=TaskRead, responses=_CONDITIONAL_BODY)
async def add_tags(
    task_id: TaskID,
    tags: Annotated[
        TagList,
        Body(
            min_length=1,
            description="Tags to add (a bare JSON array); a tag may hold any visible character",
            openapi_examples={
                "two tags": {"summary": "Two tags", "value": ["urgent", "q3/finance"]}
            },
        ),
    ],
    store: TaskStoreDep,
    user_id: TaskWriter,
    if_match: IfMatch,
) -> Response:
    """Add tags (a JSON array of strings); tags already present are not doubled."""
    task = await task_service.add_tags(
        store, user_id=user_id, task_id=task_id, tags=tags, allowed_versions=if_match
    )
    return _task_response(task)


@router.delete("/{task_id:int}/tags/{tag:tag}", response_model=TaskRead, responses=_CONDITIONAL)
async def remove_tag(
    task_id: TaskID,
    tag: Annotated[
        str,
        Path(
            min_length=1,
            max_length=50,
            pattern=TAG_PATH,
            description='The tag to remove, percent-encoded ("q3/finance" is q3%2Ffinance)',
        ),
    ],
    store: TaskStoreDep,
    user_id: TaskWriter,
    if_match: IfMatch,
) -> Response:
    """Remove one tag from a task."""
    task = await task_service.remove_tag(
        store, user_id=user_id, task_id=task_id, tag=tag, allowed_versions=if_match
    )
    return _task_response(task)
