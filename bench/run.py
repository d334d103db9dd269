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
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from bench_proc import LUA_DIR, Server, WrkResult, measure
from bench_report import SCENARIOS, Scenario, markdown, summarise, targets
from bench_seed import (
    FILTERED_QUERY,
    BenchUser,
    backend_pids,
    bulk_seed,
    drop_database,
    first_task_id,
    migrate,
    recreate_database,
    register_and_login,
    seed_users,
    server_env,
    write_plans,
)
from redis.asyncio import Redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
UPLOAD_BYTES = 10 * 1024 * 1024


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


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


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


async def timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await client.request(method, url, **kw)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response


async def scale_one(ctx: Context, api: Server, size: int, client: httpx.AsyncClient) -> Any:
    user = await register_and_login(client, f"scale{size}_{secrets.token_hex(3)}")
    await bulk_seed(ctx.args.database_url, user.id, size)
    task_id = await first_task_id(ctx.args.database_url, user.id)
    headers = {"Authorization": f"Bearer {user.token}"}
    times: dict[str, list[float]] = {"stats_miss": [], "filtered": [], "list50": []}
    cache: Counter[str] = Counter()
    for i in range(ctx.args.scale_iterations + 1):
        body = {"completed": i % 2 == 0}
        await client.patch(f"/tasks/{task_id}", json=body, headers=headers)
        elapsed, response = await timed(client, "GET", "/tasks/stats", headers=headers)
        cache[response.headers.get("x-cache", "?")] += 1
        if i:  # the first of each kind warms the connection and the plan cache
            times["stats_miss"].append(elapsed)
        for what, url in (("filtered", FILTERED_QUERY), ("list50", "/tasks?limit=50")):
            elapsed, _ = await timed(client, "GET", url, headers=headers)
            if i:
                times[what].append(elapsed)
    if cache.get("MISS", 0) != ctx.args.scale_iterations + 1:
        ctx.failures.append(f"scale {size}: stats after PATCH were not all misses: {dict(cache)}")
    median = {what: round(statistics.median(values), 3) for what, values in times.items()}
    return user.id, {"user_id": user.id, "median_ms": median, "cache": dict(cache)}


async def run_scale(ctx: Context, api: Server) -> dict[str, Any]:
    sizes = [int(s) for s in ctx.args.scale_sizes.split(",")]
    entries: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=api.url, timeout=60.0) as client:
        for size in sizes:
            log(f"scale: seeding and timing a user with {size:,} tasks")
            _, entries[str(size)] = await scale_one(ctx, api, size, client)
    base = entries[str(sizes[0])]["median_ms"]
    for entry in entries.values():
        entry["ratio"] = {k: round(v / base[k], 3) for k, v in entry["median_ms"].items()}
    explain = subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(BENCH / "bench_explain.py"), ctx.args.database_url]
        + [str(entries[str(size)]["user_id"]) for size in sizes[1:]],
        cwd=ROOT,
        env=ctx.env,
        capture_output=True,
        text=True,
    )
    plans: Any = {"error": explain.stderr[-2000:]}
    if explain.returncode == 0:
        plans = json.loads(explain.stdout)
    return {
        "base": sizes[0],
        "iterations": ctx.args.scale_iterations,
        "sizes": entries,
        "explain": plans,
    }


async def measure_upload(ctx: Context, api: Server) -> dict[str, Any]:
    """Peak RSS (VmHWM) of the worker before and after one 10 MB upload, when the route exists."""
    user = ctx.users[0]
    path = ctx.out / "upload.txt"
    line = b"benchmark upload: plain text, the same line again and again.\n"
    path.write_bytes((line * (UPLOAD_BYTES // len(line) + 1))[:UPLOAD_BYTES])
    before = api.rss_mb("VmHWM")
    async with httpx.AsyncClient(base_url=api.url, timeout=60.0) as client:
        with path.open("rb") as handle:
            response = await client.post(
                f"/tasks/{user.task_ids[0]}/files",
                files={"file": ("upload.txt", handle, "text/plain")},
                headers={"Authorization": f"Bearer {user.token}"},
            )
    path.unlink()
    after = api.rss_mb("VmHWM")
    if response.status_code in (404, 405):
        return {"note": f"skipped: POST /tasks/{{id}}/files answered {response.status_code}"}
    if response.status_code != 201:
        ctx.failures.append(f"upload: {response.status_code} {response.text[:200]}")
        return {"note": f"upload answered {response.status_code}", "status": response.status_code}
    delta = max(b - a for a, b in zip(before, after, strict=True))
    return {"status": 201, "peak_before_mb": before, "peak_after_mb": after, "peak_delta_mb": delta}


async def run_workers(ctx: Context, api: Server, api1: Server) -> dict[str, Any]:
    get = next(s for s in SCENARIOS if s.key == "get")
    rounds = max(ctx.args.rounds, 1)
    rps: dict[str, list[float]] = {"n": [], "1": []}
    for _ in range(rounds):
        for key, server in (("n", api), ("1", api1)):
            result = await run_scenario(ctx, server, get, ctx.args.duration)
            check(ctx, f"workers {server.name}", result)
            rps[key].append(result.rps)
    rps_n, rps_1 = statistics.median(rps["n"]), statistics.median(rps["1"])
    log(f"workers: {api.workers} → {rps_n:.0f} req/s, 1 → {rps_1:.0f} req/s")
    return {"n": api.workers, "rps_n": rps_n, "rps_1": rps_1, "ratio": round(rps_n / rps_1, 3)}


async def run_profile(ctx: Context, api1: Server) -> dict[str, Any]:
    from bench_profile import profile_scenario

    profiles = {}
    for key in ctx.args.profile_scenarios.split(","):
        scenario = next(s for s in SCENARIOS if s.key == key)
        log(f"profile: py-spy on {api1.name} (pid {api1.pid}) under {scenario.title}")
        profiles[key] = await profile_scenario(
            py_spy=ctx.args.py_spy,
            pid=api1.pid,
            seconds=ctx.args.profile_seconds,
            load=run_scenario(ctx, api1, scenario, ctx.args.profile_seconds + 2),
            out=ctx.out / f"profile-{key}.txt",
        )
    return profiles


async def cleanup_redis(url: str, prefix: str) -> None:
    """Delete this run's keys only (every key of the run carries its own prefix)."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


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
    results: dict[str, Any] = {
        "meta": {
            "started": stamp,
            "git": git_head(),
            "machine": machine(),
            "command": shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
            "settings": (
                f"{args.workers} workers, wrk {args.threads} thread(s) x {args.connections} "
                f"connections, {args.duration} s per run, {args.rounds} rounds A B, "
                f"{args.users} users x {args.tasks} tasks, DB_POOL_SIZE={args.pool_size}, "
                "BCRYPT_ROUNDS=4, RATE_LIMIT_ENABLED=false, LOG_LEVEL=WARNING"
            ),
        }
    }
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
        await asyncio.gather(*(server.start() for server in servers))
        log(f"servers up: api {api.url}, floor {floor.url}, api1 {api1.url}")
        ctx.users = await seed_users(
            api.url, users=args.users, tasks_per_user=args.tasks, prefix=f"b{stamp[-7:-1]}_"
        )
        ctx.plans = write_plans(out / "plans", ctx.users)
        log(f"seeded {len(ctx.users)} users x {args.tasks} tasks through the API")
        # A few requests so each worker has imported and connected what it lazily does.
        get = next(s for s in SCENARIOS if s.key == "get")
        for server in servers:
            await run_scenario(ctx, server, get, 1)
        await asyncio.sleep(1)
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
        if args.profile:
            results["profile"] = await run_profile(ctx, api1)
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
    report = markdown(results) if "summary" in results else ""
    (out / "results.md").write_text(report)
    sys.stdout.write(report)
    missed = [name for name, _, met in targets(results) if met is False]
    log(f"done in {results['elapsed_s']} s: {out}/results.json, results.md")
    if missed:
        log(f"targets missed ({len(missed)}): see the Targets table (speed never fails the run)")
    for failure in ctx.failures:
        log(f"FAILED: {failure}")
    return 1 if ctx.failures else 0


def main() -> None:
    args = parse_args()
    if not (LUA_DIR / "report.lua").exists():
        raise SystemExit("bench/lua is missing")
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
