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
    if not tasks:
        return
    background.add_task(
        send_completion_email,
        settings,
        to=user.email,
        name=user.username,
        tasks=[CompletedTask(id=task.id, title=task.title) for task in tasks],
    )
