"""File attachment endpoints: upload and list under a task, download and delete by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

import db_models
from dependencies import (
    FilesOfReadableTask,
    FilesOfWritableTask,
    FileWriter,
    OwnedFile,
    ReadableFile,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from idempotency import IdempotentRoute, idempotent
from models import FileRead
from openapi_docs import error_responses, headers_of
from rate_limit_config import active_limit, limiter
from services import files as file_service
from services.file_types import FILE_TYPES

task_files_router = APIRouter(
    prefix="/tasks/{task_id}/files",
    tags=["files"],
    responses=error_responses(401, 403, 429, 503),
    route_class=IdempotentRoute,
)
files_router = APIRouter(
    prefix="/files", tags=["files"], responses=error_responses(401, 403, 429, 503)
)

_OWNED = error_responses(403, 404, 422)
_ACCEPTED_TYPES = sorted({t.content_type.split(";")[0] for t in FILE_TYPES.values()})
# The body is parsed by hand (see services/uploads.py); this documents it for /docs.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                },
                # What the content check accepts (the extension must agree with it).
                "encoding": {"file": {"contentType": ", ".join(_ACCEPTED_TYPES)}},
            }
        },
    }
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
# Every type is bytes, application/octet-stream first: a generated client decodes by the first,
# so it hands over the exact bytes whatever the file (text/plain first made clients decode every
# download as text). The concrete types follow because the response carries one of them.
_DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's exact bytes, as an attachment. At run time `Content-Type` is"
        " the type the upload was stored as (one of: " + ", ".join(_ACCEPTED_TYPES) + ")",
        "content": dict.fromkeys(["application/octet-stream", *_ACCEPTED_TYPES], _BINARY),
        "headers": headers_of("Content-Disposition", "File-ETag"),
    }
}


@task_files_router.post(
    "",
    status_code=201,
    response_model=FileRead,
    responses=error_responses(400, 403, 404, 413, 415, 422, 502, 503, 507),
    openapi_extra=_UPLOAD_BODY,
)
@idempotent
@limiter.limit(active_limit("upload"))
async def upload_file(
    request: Request,
    task: FilesOfWritableTask,
    user_id: FileWriter,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    content_type: Annotated[str, Header(include_in_schema=False)] = "",
    content_length: Annotated[int | None, Header(include_in_schema=False)] = None,
) -> db_models.TaskFile:
    """Attach a file to a task (multipart field `file`; size and type are checked as it streams)."""
    return await file_service.upload_file(
        session,
        task_id=task["id"],
        owner_id=task["user_id"],
        user_id=user_id,
        storage=storage,
        body=request.stream(),
        content_type=content_type,
        content_length=content_length,
        max_size=settings.max_upload_size,
        allowed_extensions=settings.allowed_extensions,
    )


@task_files_router.get("", response_model=list[FileRead], responses=_OWNED)
async def list_files(task: FilesOfReadableTask, session: SessionDep) -> list[db_models.TaskFile]:
    """List the files attached to a task."""
    return await file_service.list_files(session, task_id=task["id"])


@files_router.get(
    "/{file_id}",
    response_class=StreamingResponse,
    responses={**_DOWNLOAD, **_OWNED, **error_responses(502)},
)
async def download_file(file: ReadableFile, session: SessionDep, storage: StorageDep) -> Response:
    """Download a file: its exact bytes, as an attachment."""
    chunks = await file_service.open_file(session, file=file, storage=storage)
    return StreamingResponse(
        chunks, media_type=file.content_type, headers=file_service.download_headers(file)
    )


@files_router.delete("/{file_id}", status_code=204, responses=_OWNED)
async def delete_file(
    file: OwnedFile,
    user_id: FileWriter,
    session: SessionDep,
) -> None:
    """Delete a file (its stored bytes are removed within seconds, by a job)."""
    await file_service.delete_file(session, file=file, user_id=user_id)
