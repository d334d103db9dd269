"""Benchmark the API against the floor (bench/floor_app.py) on real PostgreSQL and Redis.

Starts both servers (same uvicorn, same worker count, rate limiting off), seeds users and tasks
through the API, then drives wrk over fixed scenarios, API and floor alternately (A B A B ...).
Reports req/s, p50/p99, errors, server CPU time per request (from /proc, the figure least
disturbed by other load), RSS per worker, the scaling of one user's queries with 200 / 10 000 /
100 000 tasks, and 1 vs N workers. See bench/README.md.

    .venv/bin/python bench/run.py --smoke                  # seconds; what CI runs
    make bench                                             # the documented full run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_context import BENCH, ROOT, Context, check, log, new_server, run_scenario
from bench_deliveries import DELIVERIES, run_deliveries
from bench_extra import measure_upload, run_profile, run_scale, run_workers
from bench_feed import run_feed
from bench_proc import LUA_DIR, Server
from bench_report import SCENARIOS, Scenario, markdown, summarise, targets
from bench_seed import (
    drop_database,
    migrate,
    recreate_database,
    seed_users,
    server_env,
    write_plans,
)
from redis.asyncio import Redis


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = "Linux"
    release = Path("/etc/os-release")
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} x {cpu}, {mem_kb / 1024 / 1024:.0f} GiB RAM, {os_name}, "
        f"kernel {platform.release()}, Python {platform.python_version()}, {pg or 'psql ?'}"
    )


def git_head() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/tm_bench")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--duration", type=int, default=10, help="seconds per scenario run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per scenario")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per scenario (0: none)")
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--tasks", type=int, default=200, help="tasks per user, created via the API")
    p.add_argument("--pool-size", type=int, default=10, help="DB_POOL_SIZE of both servers")
    p.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS))
    p.add_argument("--scale", action="store_true", help="run the 200/10k/100k scaling runs")
    p.add_argument("--feed", action="store_true", help="a client syncing 10 000 events")
    p.add_argument(
        "--deliveries",
        action="store_true",
        help="webhook deliveries/s to a local receiver with N job workers (runs last)",
    )
    p.add_argument("--deliveries-count", type=int, default=DELIVERIES, help="deliveries per run")
    p.add_argument("--delivery-workers", default="1,2", help="worker process counts, in turn")
    p.add_argument("--scale-sizes", default="200,10000,100000")
    p.add_argument("--scale-iterations", type=int, default=15)
    p.add_argument("--compare-workers", action="store_true", help="1 vs --workers workers")
    p.add_argument("--profile", action="store_true", help="py-spy a 1-worker API under load")
    p.add_argument("--py-spy", default=str(ROOT / ".venv-bench/bin/py-spy"))
    p.add_argument("--profile-seconds", type=int, default=15)
    p.add_argument(
        "--profile-scenarios",
        default="get,list50",
        help="scenario keys to profile, comma-separated",
    )
    p.add_argument("--smoke", action="store_true", help="tiny run for CI (< 60 s)")
    p.add_argument("--keep-db", action="store_true", help="keep the smoke database afterwards")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    args = p.parse_args(argv)
    if args.smoke:
        args.duration, args.warmup, args.rounds, args.connections = 1, 0, 1, 4
        args.users, args.tasks, args.scale, args.compare_workers = 4, 10, True, True
        args.scale_sizes, args.scale_iterations = "200,1000", 3
        if args.database_url.endswith("/tm_bench"):
            args.database_url += "_smoke"
    return args


async def compare(
    ctx: Context, servers: dict[str, Server], scenarios: list[Scenario]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each scenario on each server in turn, round after round: A B A B ..."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in servers}
    for round_no in range(1, ctx.args.rounds + 1):
        for scenario in scenarios:
            for name, server in servers.items():
                if name.startswith("floor") and not scenario.floor:
                    continue
                if round_no == 1 and ctx.args.warmup:
                    await run_scenario(ctx, server, scenario, ctx.args.warmup)
                result = await run_scenario(ctx, server, scenario, ctx.args.duration)
                check(ctx, f"{name} {scenario.key} round {round_no}", result)
                runs[name].setdefault(scenario.key, []).append(result.as_dict())
                log(
                    f"round {round_no} {scenario.key:<12} {name:<6} {result.rps:9.1f} req/s "
                    f"p50 {result.latency_ms['p50']:.2f} ms  p99 {result.latency_ms['p99']:.2f} ms"
                    f"  cpu {result.cpu_ms / max(result.requests, 1):.3f} ms/req"
                )
    return runs


async def cleanup_redis(url: str, prefix: str) -> None:
    """Delete this run's keys only (every key of the run carries its own prefix)."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def run_meta(args: argparse.Namespace, stamp: str) -> dict[str, str]:
    return {
        "started": stamp,
        "git": git_head(),
        "machine": machine(),
        "command": shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "settings": (
            f"{args.workers} workers, wrk {args.threads} thread(s) x {args.connections} "
            f"connections, {args.duration} s per run, {args.rounds} rounds A B, "
            f"{args.users} users x {args.tasks} tasks (POST /tasks writes as {args.users} "
            f"users of its own), DB_POOL_SIZE={args.pool_size}, "
            "ARGON2_TIME_COST=1, ARGON2_MEMORY_KIB=64, RATE_LIMIT_ENABLED=false, LOG_LEVEL=WARNING"
        ),
    }


async def start_and_seed(ctx: Context, servers: list[Server], stamp: str) -> None:
    """Start the servers, seed users and tasks through the API, warm every worker up."""
    args = ctx.args
    api, floor, api1 = servers
    await asyncio.gather(*(server.start() for server in servers))
    log(f"servers up: api {api.url}, floor {floor.url}, api1 {api1.url}")
    ctx.users = await seed_users(
        api.url, users=args.users, tasks_per_user=args.tasks, prefix=f"b{stamp[-7:-1]}_"
    )
    # POST /tasks creates ~30 000 tasks: as users of its own, so every later scenario still
    # sees the data set the report names (PATCH + stats once counted ~2 000 tasks per user).
    writers = await seed_users(
        api.url, users=args.users, tasks_per_user=0, prefix=f"w{stamp[-7:-1]}_"
    )
    ctx.plans = write_plans(ctx.out / "plans", ctx.users, writers)
    log(f"seeded {len(ctx.users)} users x {args.tasks} tasks through the API")
    # A few requests so each worker has imported and connected what it lazily does.
    get = next(s for s in SCENARIOS if s.key == "get")
    for server in servers:
        await run_scenario(ctx, server, get, 1)
    await asyncio.sleep(1)


async def measure_all(ctx: Context, servers: list[Server], results: dict[str, Any]) -> None:
    """Every measurement of the run, in order, into results."""
    args = ctx.args
    api, floor, api1 = servers
    results["rss"] = {
        "api_idle": api.rss_mb(),
        "floor_idle": floor.rss_mb(),
        "api1_idle": api1.rss_mb(),
    }
    results["upload"] = await measure_upload(ctx, api1)
    chosen = [s for s in SCENARIOS if s.key in args.scenarios.split(",")]
    runs = await compare(ctx, {"api": api, "floor": floor}, chosen) if args.rounds else {}
    results["runs"] = runs
    results["summary"] = summarise(runs)
    results["rss"]["api_peak"] = api.rss_mb("VmHWM")
    results["rss"]["floor_peak"] = floor.rss_mb("VmHWM")
    if args.compare_workers:
        results["workers"] = await run_workers(ctx, api, api1)
    if args.scale:
        results["scale"] = await run_scale(ctx, api)
    if args.feed:
        results["feed"] = await run_feed(ctx, api)
    if args.profile:
        results["profile"] = await run_profile(ctx, api1)
    if args.deliveries:  # last: it stops the servers above (their in-process job workers)
        results["deliveries"] = await run_deliveries(ctx, servers)


def report(ctx: Context, results: dict[str, Any]) -> int:
    """Write and print the Markdown report, log the outcome; the exit code."""
    text = markdown(results) if "summary" in results else ""
    (ctx.out / "results.md").write_text(text)
    sys.stdout.write(text)
    missed = [name for name, _, met in targets(results) if met is False]
    log(f"done in {results['elapsed_s']} s: {ctx.out}/results.json, results.md")
    if missed:
        log(f"targets missed ({len(missed)}): see the Targets table (speed never fails the run)")
    for failure in ctx.failures:
        log(f"FAILED: {failure}")
    return 1 if ctx.failures else 0


async def bench(args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out).resolve() / (stamp + ("-smoke" if args.smoke else ""))
    (out / "logs").mkdir(parents=True, exist_ok=True)
    prefix = f"tm-bench-{stamp}-{secrets.token_hex(3)}:"
    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        secret=secrets.token_urlsafe(48),
        prefix=prefix,
        pool_size=args.pool_size,
    )
    results: dict[str, Any] = {"meta": run_meta(args, stamp)}
    started = time.monotonic()
    log(f"database {args.database_url}: recreating and migrating")
    await recreate_database(args.database_url)
    migrate(ROOT, env)
    ctx = Context(args, out, env, {}, [], [])
    servers: list[Server] = []
    try:
        api = new_server(ctx, "api", "main:app", args.workers)
        floor = new_server(ctx, "floor", "floor_app:app", args.workers)
        api1 = new_server(ctx, "api1", "main:app", 1)
        servers = [api, floor, api1]
        await start_and_seed(ctx, servers, stamp)
        await measure_all(ctx, servers, results)
    except Exception as exc:
        ctx.failures.append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for server in servers:
            server.stop()
        await cleanup_redis(args.redis_url, prefix)
        results["failures"] = ctx.failures
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.smoke and not args.keep_db:
            await drop_database(args.database_url)
    return report(ctx, results)


def main() -> None:
    args = parse_args()
    if not (LUA_DIR / "report.lua").exists():
        raise SystemExit("bench/lua is missing")
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
