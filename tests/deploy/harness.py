"""Real nginx, real app processes and a bounded load generator for the deploy tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_SCRIPT = REPO_ROOT / "scripts" / "deploy" / "blue_green.sh"
SITE_TEMPLATE = REPO_ROOT / "scripts" / "deploy" / "nginx" / "task-manager.conf.template"
# The app under test; overridable to run these tests against another checkout.
APP_DIR = Path(os.environ.get("DEPLOY_TEST_APP_DIR", str(REPO_ROOT)))


def nginx_binary() -> str:
    """Return nginx's path, failing (not skipping) the test: CI installs nginx on purpose."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("nginx is not installed: run `make infra-deps` (installs it from Debian)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL it if it outlives the timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)


@dataclass
class Nginx:
    """A non-daemon nginx with its own prefix in a tmp dir; /etc/nginx is never touched."""

    prefix: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def upstream_file(self) -> Path:
        return self.prefix / "upstream.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> str:
        return f"{nginx_binary()} -p {self.prefix} -c {self.conf}"

    def write_upstream(self, *ports: int) -> None:
        servers = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
        self.upstream_file.write_text(f"upstream task_manager_live {{\n{servers}}}\n")

    def start(self, *upstream_ports: int) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "logs").mkdir(exist_ok=True)
        self.write_upstream(*upstream_ports)
        site = SITE_TEMPLATE.read_text().replace("@UPSTREAM_FILE@", str(self.upstream_file))
        (self.prefix / "site.conf").write_text(site.replace("@LISTEN@", f"127.0.0.1:{self.port}"))
        self.conf.write_text(_nginx_main_conf(self.prefix))
        self.process = subprocess.Popen(
            [*self.command.split(), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process.pid, timeout=5)
            self.process.wait(timeout=5)


def _nginx_main_conf(prefix: Path) -> str:
    temp_paths = "".join(
        f"    {name}_temp_path {prefix}/tmp_{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log warn;\n"
        "worker_processes 1;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp_paths}"
        f"    include {prefix}/site.conf;\n"
        "}\n"
    )


@dataclass
class LoadResult:
    sent: int
    failed: int
    versions: dict[str, int]
    failures: list[str]


class LoadGenerator:
    """Threads sending requests through nginx until stopped, each on a fresh connection.

    A fresh connection per request is the strict case: a refused or reset connection during the
    switch counts as a failure. Bounded by max_seconds even if stop() is never reached.
    """

    PATHS = ("/", "/health", "/version")

    def __init__(self, base_url: str, *, threads: int = 3, max_seconds: float = 60.0) -> None:
        self._base_url = base_url
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._deadline = time.monotonic() + max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._versions: Counter[str] = Counter()
        self._failures: list[str] = []

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with self._lock:
            return LoadResult(self._sent, len(self._failures), dict(self._versions), self._failures)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self._base_url, timeout=5.0, limits=limits) as client:
            request_number = 0
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                path = self.PATHS[request_number % len(self.PATHS)]
                request_number += 1
                self._record(path, *self._send(client, path))

    @staticmethod
    def _send(client: httpx.Client, path: str) -> tuple[str | None, str | None]:
        """Return (version seen or None, failure description or None)."""
        try:
            response = client.get(path)
        except httpx.HTTPError as exc:
            return None, f"{path}: {type(exc).__name__}: {exc}"
        if not response.is_success:
            return None, f"{path}: HTTP {response.status_code}"
        if path != "/version":
            return None, None
        try:
            return str(response.json()["version"]), None
        except (ValueError, KeyError) as exc:
            return None, f"{path}: unexpected body: {exc}"

    def _record(self, path: str, version: str | None, failure: str | None) -> None:
        with self._lock:
            self._sent += 1
            if version is not None:
                self._versions[version] += 1
            if failure is not None:
                self._failures.append(failure)


@dataclass(frozen=True)
class Release:
    """What a deploy ships: the version it claims, its directory and its environment file."""

    version: str
    directory: Path
    env_file: Path


def broken_release_dir(tmp: Path) -> Path:
    """A copy of the app (symlinks) whose main module crashes at import: it can never be healthy.

    Its migrations still run, as they would for a real release with a start-up bug.
    """
    release = tmp / "broken-release"
    release.mkdir()
    skipped = {"main.py", ".git", "task_manager.db", "__pycache__"}
    for entry in APP_DIR.iterdir():
        if entry.name not in skipped:
            (release / entry.name).symlink_to(entry)
    (release / "main.py").write_text('raise RuntimeError("release with a start-up bug")\n')
    return release


@dataclass
class BlueGreenHost:
    """The deploy script's environment: state dir, nginx, ports; runs scripts/deploy for real."""

    state_dir: Path
    nginx: Nginx
    blue_port: int = field(default_factory=free_port)
    green_port: int = field(default_factory=free_port)

    def deploy(self, release: Release, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DEPLOY_RUNTIME": "process",
            "DEPLOY_VERSION": release.version,
            "DEPLOY_RELEASE_DIR": str(release.directory),
            "DEPLOY_ENV_FILE": str(release.env_file),
            "DEPLOY_APP_CMD": (
                f"{APP_DIR}/.venv/bin/uvicorn main:app --no-proxy-headers"
                " --http server_protocol:SlowClientProtocol --timeout-graceful-shutdown 5"
            ),
            "DEPLOY_MIGRATE_CMD": f"{APP_DIR}/.venv/bin/alembic upgrade head",
            "DEPLOY_STATE_DIR": str(self.state_dir),
            "DEPLOY_UPSTREAM_FILE": str(self.nginx.upstream_file),
            "DEPLOY_NGINX_CMD": self.nginx.command,
            "DEPLOY_PUBLIC_URL": self.nginx.url,
            "DEPLOY_BLUE_PORT": str(self.blue_port),
            "DEPLOY_GREEN_PORT": str(self.green_port),
            "DEPLOY_HEALTH_ATTEMPTS": "60",
            "DEPLOY_HEALTH_INTERVAL": "0.25",
            "DEPLOY_SMOKE_ATTEMPTS": "10",
            "DEPLOY_SMOKE_INTERVAL": "0.2",
            "DEPLOY_DRAIN_SECONDS": "1",
            "DEPLOY_STOP_TIMEOUT": "8",
        }
        return subprocess.run(
            ["bash", str(DEPLOY_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def live_colour(self) -> str:
        return (self.state_dir / "live_colour").read_text().strip()

    def stop_all(self) -> None:
        """Kill every app process the deploys left behind, whatever state a test failed in."""
        for pid_file in self.state_dir.glob("*.pid"):
            with contextlib.suppress(ValueError):
                stop_process_group(int(pid_file.read_text().strip()), timeout=5)


def app_env_file(directory: Path, *, version: str, database: Path) -> Path:
    """The environment of one release: its own reported version, a shared SQLite database."""
    env_file = directory / f"release-{version}.env"
    env_file.write_text(
        "\n".join(
            [
                f"APP_VERSION={version}",
                f"DATABASE_URL=sqlite:///{database}",
                "ENVIRONMENT=test",
                # Set, so the app never writes a generated key file into the release dir.
                f"SECRET_KEY=deploy-test-{uuid.uuid4().hex}",
                # The load generator would otherwise hit the API's default per-IP limit.
                "RATE_LIMIT_ENABLED=false",
                "LOG_LEVEL=WARNING",
                f"UPLOAD_DIR={directory / 'uploads'}",
                "",
            ]
        )
    )
    return env_file
