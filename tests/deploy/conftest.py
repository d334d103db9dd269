"""Fixtures for the deploy tests: one nginx and one blue-green host per module, always cleaned."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from .harness import BlueGreenHost, Nginx, nginx_binary

# Scenario results collected across the run, reported at the end and written as JSON.
RESULTS_KEY = pytest.StashKey[dict[str, dict[str, object]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    results = terminalreporter.config.stash.get(RESULTS_KEY, {})
    if not results:
        return
    terminalreporter.section("blue-green deploy under load")
    for scenario, figures in results.items():
        terminalreporter.write_line(f"{scenario}: {json.dumps(figures, sort_keys=True)}")


@pytest.fixture
def report_load(
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, object]]:
    """A dict the test fills with its figures; they go to the summary, junit XML and JSON."""
    figures: dict[str, object] = {}
    yield figures
    if not figures:
        return
    name = request.node.name
    request.config.stash[RESULTS_KEY][name] = figures
    for key, value in figures.items():
        record_property(key, value)
    out = tmp_path_factory.getbasetemp() / "deploy-results.json"
    existing = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**existing, name: figures}, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    nginx_binary()
    proxy = Nginx(prefix=tmp_path_factory.mktemp("nginx"))
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[BlueGreenHost]:
    bg_host = BlueGreenHost(state_dir=tmp_path_factory.mktemp("deploy-state"), nginx=nginx)
    # Until the first deploy nginx points at blue, as the host bootstrap leaves it.
    nginx.start(bg_host.blue_port)
    try:
        yield bg_host
    finally:
        bg_host.stop_all()
