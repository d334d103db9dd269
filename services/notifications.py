"""Email notices, built by jobs (jobs/work.py) from the events of what they tell: tasks
completed, a task shared, a comment on someone's task. Each honours its addressee's preferences
(users.notify_*); share and comment notices go to verified addresses only (completion mail:
EMAIL_REQUIRE_VERIFIED)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from background_tasks import CompletedTask, Notice, completion_message
from db_models import Task, User
from settings import Settings

USERS = User.metadata.tables[User.__tablename__]
TASKS = Task.metadata.tables[Task.__tablename__]
# The columns every notice needs about a person.
_PERSON = select(
    USERS.c.id, USERS.c.username, USERS.c.email, USERS.c.email_verified, USERS.c.notify_email,
    USERS.c.notify_task_completed, USERS.c.notify_task_shared_with_me,
    USERS.c.notify_comment_on_my_task,
).where(USERS.c.id.in_(bindparam("people", expanding=True)))  # fmt: skip
_TITLE = select(TASKS.c.title).where(TASKS.c.id == bindparam("task", type_=Integer))


async def load_people(engine: AsyncEngine, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The people a notice names, by id, as they are now (a deleted account: absent)."""
    async with engine.connect() as connection:
        rows = await connection.execute(_PERSON, {"people": list(ids)})
        return {row.id: dict(row._mapping) for row in rows}


async def task_title(engine: AsyncEngine, task_id: int) -> str | None:
    """The task's title now (None: deleted since; its notice is not sent)."""
    async with engine.connect() as connection:
        title: str | None = (await connection.execute(_TITLE, {"task": task_id})).scalar()
        return title


def completion_notice(
    settings: Settings, owner: Mapping[str, Any], tasks: Sequence[CompletedTask]
) -> EmailMessage | None:
    """One email to the owner naming the tasks a request completed, if they want it."""
    if not (owner["notify_email"] and owner["notify_task_completed"]):
        return None
    if settings.email_require_verified and not owner["email_verified"]:
        return None
    return completion_message(settings, to=owner["email"], name=owner["username"], tasks=tasks)


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
