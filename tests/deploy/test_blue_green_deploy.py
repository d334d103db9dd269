"""scripts/deploy/blue_green.sh for real: two app processes behind nginx, under load."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from .harness import (
    APP_DIR,
    BlueGreenHost,
    LoadGenerator,
    LoadResult,
    Release,
    app_env_file,
    broken_release_dir,
)

# Exit codes of blue_green.sh (see its header).
UNHEALTHY_ROLLED_BACK = 3
SMOKE_FAILED_ROLLED_BACK = 4
# A deploy takes seconds; fewer requests than this would mean the load never really ran.
MIN_REQUESTS = 50


@pytest.fixture(scope="module")
def releases_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("releases")


def make_release(
    releases_dir: Path, *, reports: str | None = None, directory: Path = APP_DIR
) -> Release:
    version = f"1.{uuid.uuid4().hex[:8]}"
    env_file = app_env_file(
        releases_dir, version=reports or version, database=releases_dir / "app.db"
    )
    return Release(version=version, directory=directory, env_file=env_file)


@pytest.fixture(scope="module")
def live(host: BlueGreenHost, releases_dir: Path) -> BlueGreenHost:
    """A host already serving a first release, as after the bootstrap's first deploy."""
    first = host.deploy(make_release(releases_dir))
    assert first.returncode == 0, first.stderr
    return host


def deploy_under_load(
    host: BlueGreenHost, release: Release
) -> tuple[subprocess.CompletedProcess[str], LoadResult]:
    with LoadGenerator(host.nginx.url) as load:
        # Traffic flows before the deploy starts and goes on after it ends.
        time.sleep(0.5)
        result = host.deploy(release)
        time.sleep(0.5)
        return result, load.stop()


def served_version(host: BlueGreenHost) -> str:
    response = httpx.get(f"{host.nginx.url}/version", timeout=5)
    assert response.status_code == 200
    return str(response.json()["version"])


def live_version(host: BlueGreenHost) -> str:
    return (host.state_dir / "live_version").read_text().strip()


def assert_nothing_listens(port: int) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def colour_port(host: BlueGreenHost, colour: str) -> int:
    return host.blue_port if colour == "blue" else host.green_port


def record(
    report: dict[str, object], result: subprocess.CompletedProcess[str], load: LoadResult
) -> None:
    report.update(
        sent=load.sent,
        failed=load.failed,
        versions_seen=load.versions,
        exit_code=result.returncode,
        first_failures=load.failures[:5],
    )


def test_deploy_good_release_switches_with_zero_failed_requests(
    live: BlueGreenHost, releases_dir: Path, report_load: dict[str, object]
) -> None:
    old_colour, old_version = live.live_colour(), live_version(live)
    release = make_release(releases_dir)

    result, load = deploy_under_load(live, release)
    record(report_load, result, load)

    assert result.returncode == 0, result.stderr
    assert load.failed == 0, load.failures[:5]
    assert load.sent >= MIN_REQUESTS
    # Both releases answered during the run: the switch happened while the load was on.
    assert load.versions.get(old_version, 0) > 0
    assert load.versions.get(release.version, 0) > 0
    assert served_version(live) == release.version
    assert live.live_colour() != old_colour
    assert_nothing_listens(colour_port(live, old_colour))


def test_deploy_release_never_healthy_rolls_back_with_zero_failed_requests(
    live: BlueGreenHost, releases_dir: Path, tmp_path: Path, report_load: dict[str, object]
) -> None:
    colour, version = live.live_colour(), live_version(live)
    release = make_release(releases_dir, directory=broken_release_dir(tmp_path))

    result, load = deploy_under_load(live, release)
    record(report_load, result, load)

    assert result.returncode == UNHEALTHY_ROLLED_BACK, result.stderr
    assert "never became healthy" in result.stderr
    assert load.failed == 0, load.failures[:5]
    assert load.sent >= MIN_REQUESTS
    assert served_version(live) == version
    assert live.live_colour() == colour
    assert_nothing_listens(colour_port(live, "green" if colour == "blue" else "blue"))


def test_deploy_release_failing_smoke_check_rolls_back(
    live: BlueGreenHost, releases_dir: Path, report_load: dict[str, object]
) -> None:
    colour, version = live.live_colour(), live_version(live)
    # Healthy, but it is not the build we asked for: it reports another version.
    release = make_release(releases_dir, reports="0.0.0-mislabelled")

    result, load = deploy_under_load(live, release)
    record(report_load, result, load)

    assert result.returncode == SMOKE_FAILED_ROLLED_BACK, result.stderr
    assert "smoke check failed" in result.stderr
    assert load.failed == 0, load.failures[:5]
    assert load.sent >= MIN_REQUESTS
    assert served_version(live) == version
    assert live.live_colour() == colour
    assert_nothing_listens(colour_port(live, "green" if colour == "blue" else "blue"))
