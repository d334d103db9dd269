"""A configuration mistake ends `make run`'s commands on one line naming the setting and the fix.

The real commands run: `alembic upgrade head` (make run's first step) and uvicorn as make run
starts it, each in a fresh folder with a clean environment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.live_server import alembic_upgrade, app_env, free_port, uvicorn_args

# (environment, words the one line must contain: the setting and the fix)
SETTINGS_MISTAKES = {
    "environment-typo": ({"ENVIRONMENT": "prod"}, ["ENVIRONMENT='prod'", "production"]),
    "production-without-secret": (
        {"ENVIRONMENT": "production", "SECRET_KEY": ""},
        ["SECRET_KEY", "ENVIRONMENT=production", "secrets.token_urlsafe"],
    ),
    "malformed-database-url": (
        {"DATABASE_URL": "postgres//user:hunter2@db/tasks"},
        ["DATABASE_URL", "postgresql://user:pass@host:5432/db"],
    ),
    "unsupported-database": (
        {"DATABASE_URL": "mysql://user@db/tasks"},
        ["DATABASE_URL", "mysql is not supported"],
    ),
}
UNREACHABLE = {
    "refused": ("postgresql://postgres:hunter2@127.0.0.1:1/tasks", "Connect call failed"),
    "sqlite-folder-missing": ("sqlite:///{tmp}/no/such/folder/tasks.db", "unable to open"),
}


def _one_line(completed: subprocess.CompletedProcess[str]) -> str:
    output = (completed.stdout + completed.stderr).strip()
    assert completed.returncode != 0, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert "hunter2" not in output  # a password in the URL is never echoed
    return lines[0]


@pytest.mark.parametrize(("overrides", "words"), SETTINGS_MISTAKES.values(), ids=SETTINGS_MISTAKES)
def test_migrate_with_a_wrong_setting_exits_on_one_line(
    tmp_path: Path, overrides: dict[str, str], words: list[str]
) -> None:
    env = app_env(tmp_path, **{"DATABASE_URL": f"sqlite:///{tmp_path}/tasks.db", **overrides})
    line = _one_line(alembic_upgrade(tmp_path, env))
    for word in words:
        assert word in line


@pytest.mark.parametrize(("overrides", "words"), SETTINGS_MISTAKES.values(), ids=SETTINGS_MISTAKES)
def test_serve_with_a_wrong_setting_exits_on_one_line(
    tmp_path: Path, overrides: dict[str, str], words: list[str]
) -> None:
    env = app_env(tmp_path, **{"DATABASE_URL": f"sqlite:///{tmp_path}/tasks.db", **overrides})
    completed = subprocess.run(
        uvicorn_args(free_port()), cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    line = _one_line(completed)
    for word in words:
        assert word in line


@pytest.mark.parametrize(("url", "reason"), UNREACHABLE.values(), ids=UNREACHABLE)
def test_migrate_with_an_unreachable_database_exits_on_one_line(
    tmp_path: Path, url: str, reason: str
) -> None:
    env = app_env(tmp_path, DATABASE_URL=url.format(tmp=tmp_path))
    line = _one_line(alembic_upgrade(tmp_path, env))
    assert line.startswith("DATABASE_URL: cannot connect to ")
    assert reason in line
    assert "fix DATABASE_URL" in line
