"""The jobs, and when the periodic ones run. Each takes JSON arguments (ids, keys, short text,
never a secret: on PostgreSQL they are stored in procrastinate_jobs), loads what it needs as it
is now, and may run twice without harm (at-least-once: a retry, or a relay re-deriving a batch
after a crash, repeats it).

Mail goes out through background_tasks.send_mail; its retries follow SMTP_MAX_ATTEMPTS and
SMTP_RETRY_BACKOFF (RetryLater). Every other failure is retried with exponential backoff
(engine.Backoff).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from procrastinate import JobContext

from background_tasks import (
    CompletedTask,
    MailRetry,
    Notice,
    delete_blobs,
    notice_message,
    reconcile_storage,
    send_mail,
)
from db_models import utcnow
from jobs import relay
from jobs.engine import RetryLater, defer, job, resources
from services import account_links, notifications, webhooks
from services.feed import purge_events

logger = logging.getLogger(__name__)

# Failed and cancelled jobs are kept this long for inspection (succeeded ones are deleted).
KEEP_FINISHED_HOURS = 24 * 7
# Due deliveries one sweep defers at most (the next sweep takes the rest).
SWEEP_BATCH = 500


async def _send(context: JobContext, message: EmailMessage | None, what: str, detail: str) -> None:
    if message is None:
        return
    found = resources(context)
    attempt = context.job.attempts + 1
    try:
        await send_mail(found.settings, message, attempt=attempt, what=what, detail=detail)
    except MailRetry as retry:
        raise RetryLater(retry.seconds, "mail not sent yet") from None


# --- mail --------------------------------------------------------------------------------------


@job("completion_mail")
async def completion_mail(context: JobContext, owner_id: int, tasks: list[list[Any]]) -> None:
    """One email to the owner naming the tasks one request completed: `tasks` [[id, title]]."""
    found = resources(context)
    owner = (await notifications.load_people(found.engine, [owner_id])).get(owner_id)
    done = [CompletedTask(id=int(task_id), title=str(title)) for task_id, title in tasks]
    message = notifications.completion_notice(found.settings, owner, done) if owner else None
    ids = ",".join(str(task.id) for task in done)
    await _send(context, message, "completion email", f"task_ids={ids}")


@job("share_mail")
async def share_mail(
    context: JobContext, task_id: int, owner_id: int, recipient_id: int, permission: str, to: str
) -> None:
    """A task was shared: the notice for `to` ("recipient" or "owner"), one job each so a retry
    never repeats the other's."""
    found = resources(context)
    people = await notifications.load_people(found.engine, [owner_id, recipient_id])
    title = await notifications.task_title(found.engine, task_id)
    if title is None or len(people) < 2:
        return
    notices = notifications.share_notices(
        task_id=task_id, title=title, owner=people[owner_id], recipient=people[recipient_id],
        permission=permission,
    )  # fmt: skip
    address = people[recipient_id if to == "recipient" else owner_id]["email"]
    mine = [notice for notice in notices if notice.to == address]
    message = notice_message(found.settings, mine[0]) if mine else None
    await _send(context, message, "share email", f"task_id={task_id}")


@job("comment_mail")
async def comment_mail(
    context: JobContext, task_id: int, owner_id: int, author: str, content: str
) -> None:
    """Someone else commented on a task: tell its owner."""
    found = resources(context)
    owner = (await notifications.load_people(found.engine, [owner_id])).get(owner_id)
    title = await notifications.task_title(found.engine, task_id)
    if owner is None or title is None:
        return
    notices = notifications.comment_notices(
        task_id=task_id, title=title, owner=owner, author=author, content=content
    )
    message = notice_message(found.settings, notices[0]) if notices else None
    await _send(context, message, "comment email", f"task_id={task_id}")


@job("link_mail")
async def link_mail(context: JobContext, user_id: int, purpose: str) -> None:
    """A password-reset or verification link: the token is made (and stored hashed) here, so
    no secret is ever a job argument."""
    found = resources(context)
    message = await account_links.link_message_for(
        found.sessions, found.settings, user_id=user_id, purpose=purpose
    )
    await _send(context, message, f"{purpose} link email", f"user_id={user_id}")


@job("notice_mail")
async def notice_mail(
    context: JobContext, kind: str, task_id: int, to: str, subject: str, body: str
) -> None:
    """A notice made when the job that deferred it ran (a webhook disabled, for now)."""
    notice = Notice(kind, task_id, to, subject, body)
    message = notice_message(resources(context).settings, notice)
    await _send(context, message, f"{kind} email", f"task_id={task_id}")


# --- webhooks ----------------------------------------------------------------------------------


@job("deliver_webhook")
async def deliver_webhook(context: JobContext, id: int) -> None:
    """One attempt of a delivery (services/webhook_delivery.py); a failure schedules the next
    attempt as a job at the row's `next_attempt_at` (the sweep catches any that is lost)."""
    found = resources(context)
    retry_in = await webhooks.attempt(found.sessions, found.settings, id, client=found.http)
    if retry_in is not None:
        await defer(context.app, "deliver_webhook", relay.delivery_lock(id), retry_in + 1, id=id)


@job("sweep_deliveries", cron="* * * * * */5", queueing_lock="sweep_deliveries")
async def sweep_deliveries(context: JobContext, timestamp: int) -> None:
    """Every 5 s: a job for every due delivery that has none waiting (redeliveries, test
    events, and any whose job was lost with a worker)."""
    found = resources(context)
    for delivery_id in await webhooks.due_deliveries(found.sessions, utcnow(), SWEEP_BATCH):
        lock = relay.delivery_lock(delivery_id)
        await defer(context.app, "deliver_webhook", lock, id=delivery_id)


@job("disable_failing_webhooks", cron="*/10 * * * *", queueing_lock="disable_failing_webhooks")
async def disable_failing_webhooks(context: JobContext, timestamp: int) -> None:
    """Every 10 min: disable the endpoints failing for WEBHOOK_DISABLE_AFTER_DAYS and email
    their owners (one job each)."""
    found = resources(context)
    for disabled in await webhooks.disable_failing(found.sessions, found.settings, utcnow()):
        notice = webhooks.disabled_notice(disabled, found.settings)
        await defer(context.app, "notice_mail", **asdict(notice))


# --- storage -----------------------------------------------------------------------------------


@job("delete_blobs")
async def delete_blobs_job(context: JobContext, keys: list[str]) -> None:
    """Remove blobs whose rows are gone; the ones that fail are retried by a new attempt."""
    failed = await delete_blobs(resources(context).storage, keys)
    if failed:
        raise RuntimeError(f"{len(failed)} blob(s) not deleted yet")


# --- periodic ----------------------------------------------------------------------------------


# Every second: the latency of event-derived work.
@job("relay", cron="* * * * * *", lock="relay", queueing_lock="relay")
async def relay_job(context: JobContext, timestamp: int) -> None:
    """Derive the jobs of the events committed since the last run (jobs/relay.py)."""
    await relay.run(context.app, resources(context))


@job("purge_events", cron="17 * * * *", queueing_lock="purge_events")
async def purge_events_job(context: JobContext, timestamp: int) -> None:
    """Hourly: delete the events older than EVENT_RETENTION_DAYS, and the failed or cancelled
    jobs older than KEEP_FINISHED_HOURS (succeeded ones are deleted as they finish)."""
    found = resources(context)
    removed = await purge_events(found.engine, found.settings)
    logger.info("events purged count=%s", removed)
    await context.app.job_manager.delete_old_jobs(
        nb_hours=KEEP_FINISHED_HOURS, include_failed=True, include_cancelled=True
    )


@job("reconcile_storage", cron="41 * * * *", queueing_lock="reconcile_storage")
async def reconcile_storage_job(context: JobContext, timestamp: int) -> None:
    """Hourly: delete blobs no row references (older than STORAGE_ORPHAN_GRACE_SECONDS)."""
    found = resources(context)
    grace = timedelta(seconds=found.settings.storage_orphan_grace_seconds)
    await reconcile_storage(found.sessions, found.storage, grace=grace)


@job("retry_stalled", cron="* * * * * */2", queueing_lock="retry_stalled")
async def retry_stalled_job(context: JobContext, timestamp: int) -> None:
    """Every 2 s: run again the jobs of workers that died mid-job (no heartbeat for
    JOB_STALLED_SECONDS)."""
    manager = context.app.job_manager
    quiet = resources(context).settings.job_stalled_seconds
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=quiet)
    for abandoned in stalled:
        logger.warning("stalled job retried job_id=%s task=%s", abandoned.id, abandoned.task_name)
        await manager.retry_job(abandoned)
