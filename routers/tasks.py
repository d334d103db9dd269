"""Task endpoints: CRUD, filters, bulk update, tags and statistics."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, BackgroundTasks, Body, Path, Query, Request, Response

import db_models
from dependencies import (
    CacheDep,
    CurrentUser,
    CurrentUserID,
    IfMatch,
    IfNoneMatch,
    OwnedTask,
    OwnedTaskRow,
    ReadEngineDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    TaskID,
    etag_of,
    get_owned_task_row,
    not_modified,
)
from exceptions import PreconditionFailedError
from idempotency import IdempotentRoute, idempotent
from models import (
    BulkUpdate,
    TagList,
    TaskCreate,
    TaskFilters,
    TaskRead,
    TaskStats,
    TaskUpdate,
    error_responses,
)
from rate_limit_config import active_limit, limiter
from services import stats as stats_service
from services import task_reads
from services import tasks as task_service

router = APIRouter(
    prefix="/tasks",
    tags=["tasks"],
    responses=error_responses(401, 429),
    route_class=IdempotentRoute,
)
_OWNED = error_responses(403, 404, 422)
# Routes with a JSON body also answer 400 when the body cannot be parsed at all.
_CONDITIONAL = error_responses(400, 403, 404, 412, 422)


_JSON = "application/json"
_PAGING = frozenset(("skip", "limit"))


def _pagination_headers(request: Request, *, total: int, skip: int, limit: int) -> dict[str, str]:
    """X-Total-Count and an RFC 8288 Link header, so clients page without guessing."""
    links = {"first": 0, "last": max(total - 1, 0) // limit * limit}
    if skip + limit < total:
        links["next"] = skip + limit
    if skip > 0:
        links["prev"] = max(skip - limit, 0)
    # What URL.include_query_params(skip=..., limit=...) gives, with the query parsed once:
    # the other parameters in their order, then skip and limit.
    url = request.url
    kept = [(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in _PAGING]
    base = str(url).partition("?")[0] + "?" + (urlencode(kept) + "&" if kept else "")
    link = ", ".join(
        f'<{base}skip={offset}&limit={limit}>; rel="{rel}"' for rel, offset in links.items()
    )
    return {"X-Total-Count": str(total), "Link": link}


@router.get("", response_model=list[TaskRead], responses=error_responses(422))
async def list_tasks(
    request: Request,
    filters: Annotated[TaskFilters, Query()],
    engine: ReadEngineDep,
    user_id: CurrentUserID,
) -> Response:
    """List the caller's tasks: filter, search, sort and page (a bare JSON array)."""
    body, total = await task_reads.list_tasks(engine, user_id=user_id, filters=filters)
    headers = _pagination_headers(request, total=total, skip=filters.skip, limit=filters.limit)
    return Response(body, media_type=_JSON, headers=headers)


@router.post("", status_code=201, response_model=TaskRead, responses=error_responses(400, 422))
@idempotent
@limiter.limit(active_limit("create_task"))
async def create_task(
    request: Request,
    response: Response,
    data: TaskCreate,
    user_id: CurrentUserID,
) -> Response:
    """Create a task."""
    engine = request.app.state.engine
    fields, version = await task_service.create_task(engine, user_id=user_id, data=data)
    return Response(
        task_reads.fields_json(fields),
        status_code=201,
        media_type=_JSON,
        headers={"ETag": etag_of(version)},
    )


@router.get("/stats", response_model=TaskStats)
async def get_stats(
    engine: ReadEngineDep, cache: CacheDep, user_id: CurrentUserID, settings: SettingsDep
) -> Response:
    """Statistics over the caller's tasks (cached; `X-Cache` says HIT or MISS)."""
    body, hit = await stats_service.get_stats(
        engine, cache, user_id=user_id, ttl=settings.stats_cache_ttl
    )
    return Response(body, media_type=_JSON, headers={"X-Cache": "HIT" if hit else "MISS"})


@router.patch("/bulk", response_model=list[TaskRead], responses=error_responses(400, 404, 422))
@idempotent
async def bulk_update_tasks(
    data: BulkUpdate,
    session: SessionDep,
    user: CurrentUser,
    background: BackgroundTasks,
    settings: SettingsDep,
) -> list[db_models.Task]:
    """Apply the same update to several tasks: all of them or none."""
    return await task_service.bulk_update(
        session,
        user=user,
        task_ids=data.task_ids,
        changes=data.updates.changes(),
        background=background,
        settings=settings,
    )


@router.get(
    "/{task_id:int}",
    response_model=TaskRead,
    responses={**_OWNED, 304: {"description": "Not modified: If-None-Match names this version"}},
)
async def get_task(task: OwnedTaskRow, if_none_match: IfNoneMatch = None) -> Response:
    """Return one of the caller's tasks (with an ETag; If-None-Match gives 304)."""
    etag = etag_of(task["version"])
    if not_modified(if_none_match, task["version"]):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(task_reads.task_json(task), media_type=_JSON, headers={"ETag": etag})


@router.patch("/{task_id:int}", response_model=TaskRead, responses=_CONDITIONAL)
async def update_task(
    task_id: TaskID,
    data: TaskUpdate,
    request: Request,
    user_id: CurrentUserID,
    background: BackgroundTasks,
    settings: SettingsDep,
    if_match: IfMatch,
) -> Response:
    """Change some fields of a task, validated as on create; If-Match guards against lost
    updates (412); completing a task emails its owner."""
    changes = data.changes()
    if not changes:  # nothing to write: the task as it is (and If-Match still applies)
        task = await get_owned_task_row(request, task_id, user_id)
        if if_match is not None and task["version"] not in if_match:
            raise PreconditionFailedError(task_id)
        fields, version = task_reads.task_fields(task), task["version"]
    else:
        fields, version = await task_service.update_task(
            request.app.state.engine,
            user_id=user_id,
            task_id=task_id,
            changes=changes,
            background=background,
            settings=settings,
            allowed_versions=if_match,
        )
    return Response(
        task_reads.fields_json(fields), media_type=_JSON, headers={"ETag": etag_of(version)}
    )


@router.delete("/{task_id:int}", status_code=204, responses=_CONDITIONAL)
async def delete_task(
    task: OwnedTask,
    session: SessionDep,
    user: CurrentUser,
    storage: StorageDep,
    background: BackgroundTasks,
    if_match: IfMatch,
) -> None:
    """Delete a task with its tags and files (If-Match: only if still at that version)."""
    await task_service.delete_task(
        session,
        user=user,
        task=task,
        storage=storage,
        background=background,
        allowed_versions=if_match,
    )


@router.post("/{task_id:int}/tags", response_model=TaskRead, responses=_CONDITIONAL)
async def add_tags(
    tags: Annotated[TagList, Body(min_length=1)],
    task: OwnedTask,
    session: SessionDep,
    user: CurrentUser,
    if_match: IfMatch,
    response: Response,
) -> db_models.Task:
    """Add tags (a JSON array of strings); tags already present are not doubled."""
    task = await task_service.add_tags(
        session, user=user, task=task, tags=tags, allowed_versions=if_match
    )
    response.headers["ETag"] = etag_of(task.version)
    return task


@router.delete("/{task_id:int}/tags/{tag}", response_model=TaskRead, responses=_CONDITIONAL)
async def remove_tag(
    tag: Annotated[str, Path(min_length=1, max_length=50)],
    task: OwnedTask,
    session: SessionDep,
    user: CurrentUser,
    if_match: IfMatch,
    response: Response,
) -> db_models.Task:
    """Remove one tag from a task."""
    task = await task_service.remove_tag(
        session, user=user, task=task, tag=tag, allowed_versions=if_match
    )
    response.headers["ETag"] = etag_of(task.version)
    return task
