"""Completion notices: scheduled after the commit that completed the tasks."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import BackgroundTasks

from background_tasks import CompletedTask, send_completion_email
from db_models import Task, User
from settings import Settings


def schedule_completion_email(
    background: BackgroundTasks, settings: Settings, *, user: User, tasks: Sequence[Task]
) -> None:
    """One email to the owner naming every task this request completed (none: no email)."""
    schedule_completion_notice(
        background,
        settings,
        to=user.email,
        name=user.username,
        tasks=[CompletedTask(id=task.id, title=task.title) for task in tasks],
    )


def schedule_completion_notice(
    background: BackgroundTasks,
    settings: Settings,
    *,
    to: str,
    name: str,
    tasks: Sequence[CompletedTask],
) -> None:
    """The same from plain values, for writes that load no ORM objects."""
    if tasks:
        background.add_task(send_completion_email, settings, to=to, name=name, tasks=list(tasks))
