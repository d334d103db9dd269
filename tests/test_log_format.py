"""Every line `make run` prints is in the configured format, with ISO 8601 times (milliseconds
and UTC offset): alembic's, uvicorn's and the app's, through the real processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.live_server import alembic_upgrade, app_env, live_server

ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def _json_lines(output: str) -> list[dict[str, object]]:
    entries = []
    for line in output.splitlines():
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict), line
        assert re.fullmatch(ISO_TIME, str(entry["time"])), line
        entries.append(entry)
    return entries


def test_json_logs_cover_migrations_uvicorn_and_requests(tmp_path: Path) -> None:
    env = app_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/tasks.db", LOG_FORMAT="json")
    migrated = alembic_upgrade(tmp_path, env)
    assert migrated.returncode == 0, migrated.stderr
    alembic_lines = _json_lines(migrated.stdout + migrated.stderr)
    assert any(e["logger"] == "alembic.runtime.migration" for e in alembic_lines)

    log = tmp_path / "uvicorn.log"
    with live_server(tmp_path, env, log) as base:
        assert httpx.get(f"{base}/version").status_code == 200
    served = _json_lines(log.read_text())
    messages = {(e["logger"], e["message"]) for e in served}
    assert ("uvicorn.error", "Waiting for application startup.") in messages  # before lifespan
    assert ("uvicorn.error", "Application shutdown complete.") in messages
    assert any(e["logger"] == "access" and e.get("path") == "/version" for e in served)


def test_text_logs_start_with_an_iso_time(tmp_path: Path) -> None:
    env = app_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/tasks.db", LOG_FORMAT="text")
    migrated = alembic_upgrade(tmp_path, env)
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "uvicorn.log"
    with live_server(tmp_path, env, log) as base:
        assert httpx.get(f"{base}/version").status_code == 200
    # alembic's revision messages may continue on a second line; every entry starts with a time
    entries = (migrated.stdout + log.read_text()).splitlines()
    starts = [line for line in entries if re.match(ISO_TIME + " ", line)]
    assert any(" uvicorn.error [-] Started server process" in line for line in starts)
    assert any(" access [" in line and "GET /version 200" in line for line in starts)
    assert not any(line.startswith("INFO") for line in entries), entries
