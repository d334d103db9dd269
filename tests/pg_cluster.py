"""A throwaway PostgreSQL cluster that a test may stop, kill and restart: never the shared one.

Built with `initdb` in a temp dir, on a free port, listening on 127.0.0.1 only. As root the
binaries run as the `postgres` user (initdb refuses root). `available()` says why not when the
binaries are missing, so tests can skip with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.file_helpers import free_port


def _bin_dir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    """Why no throwaway cluster can be built here, or None when one can."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


class Cluster:
    def __init__(self, root: Path) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        self.bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self, *, wait: bool = True) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=60"
        )
        wait_flag = "-w" if wait else "-W"
        self._run("pg_ctl", "start", wait_flag, "-D", str(self.data), "-l", str(self.log),
                  "-o", options)  # fmt: skip

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        wait_flag = "-w" if wait else "-W"
        self._run("pg_ctl", "stop", wait_flag, "-m", mode, "-D", str(self.data), check=False)

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster; always stopped and removed afterwards, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="tm-pg-"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
    cluster = Cluster(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
