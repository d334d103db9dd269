"""Attachment use cases: upload, list, download, delete.

The blob is written before its row and removed after its row is gone, so a crash at any point
leaves at worst a blob without a row, which `reconcile-storage` deletes; never a row without
its blob.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import anyio
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db_models import Task, TaskFile, utcnow
from exceptions import AttachmentNotFoundError, PayloadTooLargeError, TaskNotFoundError
from models import FileRead
from services import event_writes, file_types, uploads
from storage import BlobNotFoundError, Storage, new_key

logger = logging.getLogger(__name__)


async def _end_read_transaction(session: AsyncSession) -> None:
    # Streaming can take minutes: do not hold a pooled connection (on SQLite, the write lock
    # that BEGIN IMMEDIATE takes) while the bytes move. Loaded objects stay usable.
    await session.commit()


async def _discard_blob(storage: Storage, key: str) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await storage.delete(key)
        except Exception as exc:
            logger.warning("could not remove blob key=%s error=%s", key, type(exc).__name__)


async def upload_file(
    session: AsyncSession,
    *,
    task_id: int,
    owner_id: int,
    user_id: int,
    storage: Storage,
    body: AsyncIterator[bytes],
    content_type: str,
    content_length: int | None,
    max_size: int,
    allowed_extensions: Sequence[str],
) -> TaskFile:
    """Stream the `file` part to storage under a new key, then record it."""
    max_body = max_size + uploads.MULTIPART_OVERHEAD
    if content_length is not None and content_length > max_body:
        raise PayloadTooLargeError(max_size)
    await _end_read_transaction(session)
    async with uploads.open_file_part(body, content_type=content_type, max_body=max_body) as part:
        filename = file_types.display_name(part.filename)
        file_type = file_types.file_type_for(filename, allowed=allowed_extensions)
        check = file_types.ContentCheck(file_type, max_size=max_size)
        key = new_key()
        await storage.save(key, check.chunks(part.chunks))
    row = TaskFile(
        task_id=task_id,
        storage_key=key,
        original_filename=filename,
        content_type=file_type.content_type,
        file_size=check.size,
        sha256=check.sha256,
        uploaded_by=user_id,
    )
    session.add(row)
    try:
        await session.flush()
        file_json = FileRead.model_validate(row).model_dump_json().encode()
        event = event_writes.file_uploaded(user_id, owner_id, file_json, task_id, row.id)
        await event_writes.record(await session.connection(), [event], row.uploaded_at)
        await session.commit()
    except IntegrityError as exc:
        # The only constraint a fresh random key can break is the task's foreign key: the
        # task was deleted while the file streamed in.
        await session.rollback()
        await _discard_blob(storage, key)
        raise TaskNotFoundError(task_id) from exc
    except BaseException:
        await _discard_blob(storage, key)
        raise
    logger.info("file uploaded file_id=%s task_id=%s size=%s", row.id, task_id, row.file_size)
    return row


async def list_files(session: AsyncSession, *, task_id: int) -> list[TaskFile]:
    stmt = select(TaskFile).where(TaskFile.task_id == task_id).order_by(TaskFile.id)
    return list(await session.scalars(stmt))


async def open_file(
    session: AsyncSession, *, file: TaskFile, storage: Storage
) -> AsyncIterator[bytes]:
    """The file's bytes as a stream; the blob is opened before the response starts."""
    await _end_read_transaction(session)
    try:
        return await storage.open(file.storage_key)
    except BlobNotFoundError:
        logger.error("blob missing for file file_id=%s key=%s", file.id, file.storage_key)
        raise AttachmentNotFoundError(file.id) from None


def download_headers(file: TaskFile) -> dict[str, str]:
    return {
        "Content-Disposition": file_types.content_disposition(file.original_filename),
        "Content-Length": str(file.file_size),
        "ETag": f'"{file.sha256}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-cache",
    }


async def delete_file(
    session: AsyncSession,
    *,
    file: TaskFile,
    user_id: int,
) -> None:
    """Delete the row now and the blob after (a job derived from the file.deleted event, which
    names it). Of two racing deletes, the one whose DELETE finds no row any more answers 404."""
    file_id, key, task_id = file.id, file.storage_key, file.task_id
    filename = file.original_filename
    deleted = await session.execute(
        delete(TaskFile).where(TaskFile.id == file_id).returning(TaskFile.id)
    )
    if deleted.first() is None:
        await session.rollback()
        raise AttachmentNotFoundError(file_id)
    owner = await session.scalar(select(Task.user_id).where(Task.id == task_id))
    if owner is not None:
        event = event_writes.file_deleted(user_id, owner, task_id, file_id, filename, key)
        await event_writes.record(await session.connection(), [event], utcnow())
    await session.commit()
    logger.info("file deleted file_id=%s task_id=%s", file_id, task_id)
