"""What every step of a run shares: its context, the log, servers, one wrk scenario."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_proc import Server, WrkResult, measure
from bench_report import Scenario
from bench_seed import BenchUser, backend_pids

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass
class Context:
    args: argparse.Namespace
    out: Path
    env: dict[str, str]
    plans: dict[str, Path]
    users: list[BenchUser]
    failures: list[str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def new_server(ctx: Context, name: str, app: str, workers: int) -> Server:
    return Server(
        name=name,
        app=app,
        port=free_port(),
        workers=workers,
        env=ctx.env,
        log_dir=ctx.out / "logs",
        cwd=ROOT,
        uvicorn=ROOT / ".venv/bin/uvicorn",
        app_dir=BENCH if app.startswith("floor_app") else None,
    )


async def run_scenario(
    ctx: Context, server: Server, scenario: Scenario, duration: int
) -> WrkResult:
    args = ctx.args
    script_args = [str(ctx.plans[scenario.plan]), *scenario.extra]
    connections = scenario.connections or args.connections
    threads = min(args.threads, connections)
    if scenario.script == "patch_stats.lua":
        script_args.append(str(threads))
    names = ["task-manager-api"] if server.name.startswith("api") else ["bench-floor"]
    db_pids = await backend_pids(args.database_url, names)
    return await measure(
        server,
        scenario.script,
        script_args,
        duration=duration,
        connections=connections,
        threads=threads,
        db_pids=db_pids,
    )


def check(ctx: Context, label: str, result: WrkResult) -> None:
    if result.errors or result.bad_statuses or not result.requests:
        ctx.failures.append(
            f"{label}: {result.requests} requests, {result.errors} socket errors, "
            f"statuses {result.counts}"
        )
