"""The extra measurements: scaling with one user's task count (plus EXPLAIN), N vs 1 workers,
the 10 MB upload's peak RSS, and py-spy profiles."""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import time
from collections import Counter
from typing import Any

import httpx
from bench_context import BENCH, ROOT, Context, check, log, run_scenario
from bench_proc import Server
from bench_report import SCENARIOS
from bench_seed import FILTERED_QUERY, bulk_seed, first_task_id, register_and_login

UPLOAD_BYTES = 10 * 1024 * 1024


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
