"""Processes: the servers under test, their CPU time and memory from /proc, and wrk runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
LUA_DIR = Path(__file__).resolve().parent / "lua"


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in task.read_text().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    result: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop()
        for child in children(current):
            result.append(child)
            queue.append(child)
    return result


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name may hold spaces: fields are counted after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Server:
    """One uvicorn server (API or floor) started by the benchmark, in its own process group."""

    name: str
    app: str
    port: int
    workers: int
    env: dict[str, str]
    log_dir: Path
    cwd: Path
    uvicorn: Path
    app_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        args = [str(self.uvicorn), self.app, "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--workers", str(self.workers), "--no-access-log", "--log-level", "warning"]
        args += ["--no-proxy-headers"]  # as make run; the floor keeps uvicorn's own protocol
        if self.app == "main:app":
            args += ["--http", "server_protocol:SlowClientProtocol"]
        if self.app_dir is not None:
            args += ["--app-dir", str(self.app_dir)]
        log = (self.log_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited; see {log.name}")
                try:
                    if (await client.get(self.url + "/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"{self.name} did not become healthy in {timeout}s")
        # Every worker must be up before any measurement: wait for the expected process count.
        while self.workers > 1 and len(self.worker_pids()) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: workers did not all start")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Our own process group only (started with start_new_session).
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def all_pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def worker_pids(self) -> list[int]:
        """The serving processes: uvicorn's spawned workers, or the single process itself."""
        if self.workers == 1:
            return [self.pid]
        return [
            pid
            for pid in children(self.pid)
            if "multiprocessing" in cmdline(pid) and "resource_tracker" not in cmdline(pid)
        ]

    def cpu_ticks(self) -> int:
        return sum(cpu_ticks(pid) for pid in self.all_pids())

    def rss_mb(self, key: str = "VmRSS") -> list[float]:
        return [round(status_kb(pid, key) / 1024, 1) for pid in self.worker_pids()]


def backend_ticks(pids: list[int]) -> dict[int, int]:
    return {pid: cpu_ticks(pid) for pid in pids}


def surviving_delta(before: dict[int, int]) -> int:
    """CPU ticks spent since `before` by the processes still alive (a churned-away backend's
    time is lost, so with connection churn this is a lower bound)."""
    delta = 0
    for pid, ticks in before.items():
        now = cpu_ticks(pid)
        if now:
            delta += now - ticks
    return delta


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    latency_ms: dict[str, float]
    counts: dict[str, int]
    cpu_ms: float
    db_cpu_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def bad_statuses(self) -> int:
        return sum(
            n for key, n in self.counts.items() if key.startswith("status_") and int(key[7:]) >= 400
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "bad_statuses": self.bad_statuses,
            "latency_ms": self.latency_ms,
            "counts": self.counts,
            "cpu_ms_per_req": round(self.cpu_ms / self.requests, 4) if self.requests else None,
            "db_cpu_ms_per_req": round(self.db_cpu_ms / self.requests, 4)
            if self.requests
            else None,
        }


async def run_wrk(
    url: str,
    script: str,
    script_args: list[str],
    *,
    duration: int,
    connections: int,
    threads: int = 1,
) -> tuple[dict[str, Any], str]:
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s"]
    args += ["--timeout", "10s", "-s", script, url, "--", *script_args]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=LUA_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            summary: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            return summary, text
    raise RuntimeError(f"wrk gave no summary (exit {proc.returncode}):\n{text}")


async def measure(
    server: Server,
    script: str,
    script_args: list[str],
    *,
    duration: int,
    connections: int,
    threads: int,
    db_pids: list[int],
) -> WrkResult:
    """One wrk run against `server`, with the server's (and its DB backends') CPU time."""
    before = server.cpu_ticks()
    db_before = backend_ticks(db_pids)
    summary, _ = await run_wrk(
        server.url,
        script,
        script_args,
        duration=duration,
        connections=connections,
        threads=threads,
    )
    cpu_ms = (server.cpu_ticks() - before) * 1000 / CLOCK_TICKS
    db_cpu_ms = surviving_delta(db_before) * 1000 / CLOCK_TICKS
    errors = summary["errors"]
    latency = summary["latency_us"]
    return WrkResult(
        requests=int(summary["requests"]),
        seconds=summary["duration_us"] / 1e6,
        errors=sum(int(errors[key]) for key in ("connect", "read", "write", "timeout")),
        latency_ms={key: round(float(latency[key]) / 1000, 3) for key in latency},
        counts={key: int(value) for key, value in summary["counts"].items()},
        cpu_ms=cpu_ms,
        db_cpu_ms=db_cpu_ms,
    )
