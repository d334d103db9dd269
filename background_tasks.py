"""The work jobs do (jobs/work.py runs it): blob cleanup, storage reconciliation, emails.

Every function takes plain values (keys, ids, strings; the storage client and frozen
settings), opens its own session when it needs one, and can be run twice without harm.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db_models import TaskFile, utcnow
from settings import Settings
from storage import Storage

logger = logging.getLogger(__name__)

RECONCILE_BATCH = 500
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


# --- blobs --------------------------------------------------------------------------------------


async def delete_blobs(storage: Storage, keys: Sequence[str]) -> list[str]:
    """Remove blobs whose rows are already gone; returns the keys that failed (the job retries
    them; what never goes is left to `reconcile-storage`)."""
    failed = []
    for key in keys:
        try:
            await storage.delete(key)
        except Exception as exc:
            logger.warning("blob cleanup failed key=%s error=%s", key, type(exc).__name__)
            failed.append(key)
    logger.info("blob cleanup done count=%s failed=%s", len(keys), len(failed))
    return failed


@dataclass
class ReconcileReport:
    scanned: int = 0
    referenced: int = 0
    too_recent: int = 0
    orphaned: int = 0
    deleted: int = 0
    incomplete: int = 0  # half-written uploads found (and purged, unless a dry run)
    incomplete_purged: int = 0


async def _referenced(sessions: async_sessionmaker[AsyncSession], keys: list[str]) -> set[str]:
    async with sessions() as session:
        stmt = select(TaskFile.storage_key).where(TaskFile.storage_key.in_(keys))
        return set(await session.scalars(stmt))


async def reconcile_storage(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    *,
    grace: timedelta,
    dry_run: bool = False,
) -> ReconcileReport:
    """Delete blobs that no row references and that are older than `grace`.

    Rows are looked up after the blobs are listed, so a row committed meanwhile is seen; the
    grace period covers uploads whose blob is stored but whose row is not committed yet.
    """
    report = ReconcileReport()
    cutoff = utcnow() - grace
    batch: list[str] = []
    async for blob in storage.list_blobs():
        report.scanned += 1
        if blob.modified > cutoff:
            report.too_recent += 1
            continue
        batch.append(blob.key)
        if len(batch) >= RECONCILE_BATCH:
            await _reconcile_batch(sessions, storage, batch, report, dry_run=dry_run)
            batch = []
    if batch:
        await _reconcile_batch(sessions, storage, batch, report, dry_run=dry_run)
    incomplete = await storage.purge_incomplete(older_than=cutoff, dry_run=dry_run)
    for name in incomplete:
        logger.info("half-written upload %s name=%s", "found" if dry_run else "purged", name)
    report.incomplete = len(incomplete)
    report.incomplete_purged = 0 if dry_run else len(incomplete)
    logger.info(
        "storage reconciled scanned=%s orphaned=%s deleted=%s incomplete=%s dry_run=%s",
        report.scanned,
        report.orphaned,
        report.deleted,
        report.incomplete,
        dry_run,
    )
    return report


async def _reconcile_batch(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    keys: list[str],
    report: ReconcileReport,
    *,
    dry_run: bool,
) -> None:
    referenced = await _referenced(sessions, keys)
    report.referenced += len(referenced)
    for key in keys:
        if key in referenced:
            continue
        report.orphaned += 1
        if not dry_run:
            await storage.delete(key)
            report.deleted += 1
            logger.info("orphaned blob deleted key=%s", key)


# --- email --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedTask:
    id: int
    title: str


def _one_line(text: str) -> str:
    # Titles are free text: a line break in a header would let a title add headers.
    return _LINE_BREAKS.sub(" ", text).strip()


def completion_message(
    settings: Settings, *, to: str, name: str, tasks: Sequence[CompletedTask]
) -> EmailMessage:
    message = EmailMessage()
    first = _one_line(tasks[0].title)
    subject = f"Task completed: {first}"
    if len(tasks) > 1:
        subject = f"{len(tasks)} tasks completed"
    message["Subject"] = subject[:200]
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Message-ID"] = make_msgid(domain="task-manager")
    lines = "\n".join(f'  - "{_one_line(task.title)}" (task #{task.id})' for task in tasks)
    message.set_content(
        f"Hello {name},\n\nMarked complete:\n{lines}\n\nWell done!\n-- Task Manager\n"
    )
    return message


def _deliver(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


def _is_permanent(exc: Exception) -> bool:
    """A 5xx answer will not change on retry (a 4xx or a dropped connection may)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500


@dataclass(frozen=True)
class Notice:
    """A plain-text email about a task (shared, commented on): free text, made safe as it is
    built. `kind` names it in the logs, which never carry the address."""

    kind: str
    task_id: int
    to: str
    subject: str
    body: str


def notice_message(settings: Settings, notice: Notice) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = _one_line(notice.subject)[:200]
    message["From"] = settings.smtp_from
    message["To"] = notice.to
    message["Message-ID"] = make_msgid(domain="task-manager")
    message.set_content(notice.body)
    return message


def link_message(
    settings: Settings, *, to: str, name: str, subject: str, text: str, link: str
) -> EmailMessage:
    """A plain-text email carrying one link (password reset, address verification)."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Message-ID"] = make_msgid(domain="task-manager")
    message.set_content(f"Hello {_one_line(name)},\n\n{text}\n\n  {link}\n\n-- Task Manager\n")
    return message


def unsent(what: str, detail: str) -> None:
    """The one line an email leaves when SMTP_HOST is unset (never the address)."""
    logger.info("%s not sent (SMTP_HOST unset) %s", what, detail)


class MailRetry(Exception):
    """A message not sent for a reason that may pass (a 4xx answer, a dropped connection):
    try again after `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry in {seconds} s")
        self.seconds = seconds


async def send_mail(
    settings: Settings, message: EmailMessage, *, attempt: int, what: str, detail: str
) -> None:
    """Deliver `message` (this is its `attempt`-th try, from 1). Raises MailRetry when it may
    succeed later and SMTP_MAX_ATTEMPTS allows (after SMTP_RETRY_BACKOFF, doubled per try);
    otherwise logs the failure. `what` and `detail` name it in the log (never the address)."""
    if not settings.smtp_host:
        unsent(what, detail)
        return
    try:
        await anyio.to_thread.run_sync(_deliver, settings, message)
    except Exception as exc:
        # The exception text may quote the address: log its type and code only.
        code = getattr(exc, "smtp_code", "-")
        last = attempt >= settings.smtp_max_attempts
        if last or not isinstance(exc, smtplib.SMTPException | OSError) or _is_permanent(exc):
            logger.error(
                "%s failed %s attempts=%s error=%s code=%s",
                what, detail, attempt, type(exc).__name__, code,
            )  # fmt: skip
            return
        logger.warning(
            "%s attempt failed, retrying %s attempt=%s error=%s",
            what, detail, attempt, type(exc).__name__,
        )  # fmt: skip
        raise MailRetry(settings.smtp_retry_backoff * 2 ** (attempt - 1)) from None
    logger.info("%s sent %s", what, detail)
