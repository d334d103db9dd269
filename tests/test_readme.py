"""The README's examples run, as written and in order, against a fresh server.

Every fenced `bash` block with a `curl` in it, from "## API" to "## Rate limits", is one
walkthrough: run by bash (`set -euo pipefail`) in an empty folder against a real uvicorn on an
empty database, with `localhost:8000` pointed at that server. Each curl fails on an HTTP error
(`--fail-with-body`), and the answers the README quotes (statistics, download, delete) are
compared with what the server said.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.live_server import migrated_server

README = ROOT / "README.md"
# Every curl: fail on an HTTP error, quiet but for errors, each answer on its own line (a
# README command's own --write-out, given later, wins).
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --silent --show-error --write-out '\\n' "$@"; }
"""


def walkthrough(text: str) -> list[str]:
    """The README's API and files examples: fenced bash blocks that call curl, in order."""
    section = text[text.index("\n## API\n") : text.index("\n## Rate limits\n")]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [block for block in blocks if re.search(r"^curl |\$\(curl ", block, flags=re.M)]


def quoted_answer(text: str, command: str) -> Any:
    """The JSON the README shows (as `# ...` comment lines) right after the line of `command`."""
    start = text.index(command)
    lines = []
    for line in text[text.index("\n", start) + 1 :].splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return json.loads(" ".join(lines))


@pytest.fixture
def server(empty_database: str, redis_url: str | None, tmp_path: Path) -> Iterator[str]:
    with migrated_server(tmp_path, empty_database, redis_url) as base:
        yield base


def test_readme_walkthrough_runs_as_written_on_a_fresh_server(server: str, tmp_path: Path) -> None:
    text = README.read_text()
    blocks = walkthrough(text)
    assert len(blocks) >= 4, "the README's curl examples were not found"
    host = server.removeprefix("http://")
    script = PRELUDE + "\n".join(blocks).replace("localhost:8000", host)
    work = tmp_path / "reader"
    work.mkdir()
    run = subprocess.run(
        ["bash", "-c", script], cwd=work, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    stats = next(a for a in answers if "completion_rate" in a)
    assert stats == quoted_answer(text, "curl localhost:8000/tasks/stats")
    assert "same bytes" in run.stdout.splitlines()
    assert run.stdout.splitlines()[-1] == "204"
