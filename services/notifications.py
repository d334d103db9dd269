"""Email notices, scheduled after the commit of what they tell: tasks completed, a task shared,
a comment on someone's task. Each honours its addressee's preferences (users.notify_*); share
and comment notices go to verified addresses only (completion mail: EMAIL_REQUIRE_VERIFIED)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import BackgroundTasks

from background_tasks import CompletedTask, Notice, send_completion_email, send_notice
from settings import Settings


def schedule_completion_notice(
    background: BackgroundTasks,
    settings: Settings,
    *,
    to: str,
    name: str,
    tasks: Sequence[CompletedTask],
) -> None:
    """One email to the owner naming every task this request completed (none: no email)."""
    if tasks:
        background.add_task(send_completion_email, settings, to=to, name=name, tasks=list(tasks))


def schedule_notices(
    background: BackgroundTasks, settings: Settings, notices: Sequence[Notice]
) -> None:
    """Send each notice after the response (the commit is already done)."""
    for notice in notices:
        background.add_task(send_notice, settings, notice)


def _wants(person: Mapping[str, Any], kind: str = "notify_email") -> bool:
    """Whether a notice of this kind may go to this person: a verified address, email on, and
    this kind on."""
    return bool(person["email_verified"] and person["notify_email"] and person[kind])


def share_notices(
    *,
    task_id: int,
    title: str,
    owner: Mapping[str, Any],
    recipient: Mapping[str, Any],
    permission: str,
) -> list[Notice]:
    """A task was shared: tell the recipient (unless they turned it off) and its owner."""
    notices = []
    right = "edit" if permission == "edit" else "view"
    if _wants(recipient, "notify_task_shared_with_me"):
        notices.append(
            Notice(
                "share", task_id, recipient["email"],
                f"{owner['username']} shared a task with you: {title}",
                f"Hello {recipient['username']},\n\n{owner['username']} shared \"{title}\""
                f" (task #{task_id}) with you; you can {right} it.\n\n-- Task Manager\n",
            )
        )  # fmt: skip
    if _wants(owner):
        notices.append(
            Notice(
                "share", task_id, owner["email"], f"You shared a task: {title}",
                f"Hello {owner['username']},\n\n\"{title}\" (task #{task_id}) is now shared"
                f" with {recipient['username']}, who can {right} it.\n\n-- Task Manager\n",
            )
        )  # fmt: skip
    return notices


def comment_notices(
    *, task_id: int, title: str, owner: Mapping[str, Any], author: str, content: str
) -> list[Notice]:
    """Someone else commented on a task: tell its owner, unless they turned it off."""
    if not _wants(owner, "notify_comment_on_my_task"):
        return []
    return [
        Notice(
            "comment", task_id, owner["email"], f"New comment on: {title}",
            f"Hello {owner['username']},\n\n{author} commented on \"{title}\" (task #{task_id}):"
            f"\n\n{content}\n\n-- Task Manager\n",
        )
    ]  # fmt: skip
