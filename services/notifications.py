"""Completion notices: scheduled after the commit that completed the tasks."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import BackgroundTasks

from background_tasks import CompletedTask, send_completion_email
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
