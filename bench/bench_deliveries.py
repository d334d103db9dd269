"""The webhook deliveries scenario: deliveries per second to a local receiver with N job workers
(`python manage.py worker`), and the CPU each delivery costs the workers and PostgreSQL.

For each N of --delivery-workers: a fresh webhook (`events: ["*"]`, the previous one deleted)
of one user points at bench/receiver.py; the user creates --deliveries-count tasks (POST /tasks
through an API of its own with JOB_WORKER_IN_PROCESS=false, so nothing relays them yet). The
bench then holds the relay's position row (`event_consumers` "relay", FOR UPDATE), starts N
workers, waits until all have registered and one is running the relay (blocked on that row),
and releases it: the clock runs from there until every delivery of the webhook is `succeeded`
and the receiver counted them. Worker start-up is thus outside the figures (reported apart);
the relay's work (reading the events, planning the deliveries, deferring their jobs) is in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import httpx
from bench_context import BENCH, ROOT, Context, free_port, log, new_server
from bench_proc import CLOCK_TICKS, Server, cpu_ticks, descendants
from bench_seed import BenchUser, pg_dsn, register_and_login

DELIVERIES = 2000
POLL_SECONDS = 0.05
SEED_CONCURRENCY = 16
# The user's events the relay has not passed yet: each becomes one delivery (a fresh user sees
# only its own events; "*" takes every type).
_WAITING_EVENTS = """
SELECT count(*) FROM events e, event_consumers c
WHERE c.name = 'relay' AND (e.txid, e.id) > (c.txid, c.event_id) AND e.owner_id = $1
"""
_STATUSES = "SELECT status, count(*) FROM webhook_deliveries WHERE webhook_id = $1 GROUP BY 1"
_READY = """
SELECT (SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat >= $1),
       (SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'tm:relay' AND status = 'doing')
"""
_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> ALL($1::int[]) AND backend_type = 'client backend'"
)


def worker_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


class Processes:
    """Subprocesses of this scenario, each in a process group of its own."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], log_path: os.PathLike[str]) -> int:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started.append(proc)
        return proc.pid

    def pids(self) -> list[int]:
        return [pid for proc in self.started for pid in (proc.pid, *descendants(proc.pid))]

    def ticks(self) -> int:
        return sum(cpu_ticks(pid) for pid in self.pids())

    def dead(self) -> list[int]:
        return [proc.pid for proc in self.started if proc.poll() is not None]

    def stop(self) -> None:
        """SIGTERM (a worker finishes its jobs, up to its grace), then SIGKILL."""
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.started.clear()


async def _receiver_stats(client: httpx.AsyncClient, url: str, path: str) -> dict[str, Any]:
    response = await client.get(url + path)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def _wait_receiver(client: httpx.AsyncClient, url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await _receiver_stats(client, url, "/stats")
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start") from None
            await asyncio.sleep(0.1)


async def _fresh_webhook(
    client: httpx.AsyncClient, user: BenchUser, target: str, previous: int | None
) -> int:
    headers = {"Authorization": f"Bearer {user.token}"}
    if previous is not None:  # its deliveries go with it (ON DELETE CASCADE)
        (await client.delete(f"/webhooks/{previous}", headers=headers)).raise_for_status()
    body = {"url": target, "events": ["*"], "description": "bench receiver"}
    response = await client.post("/webhooks", json=body, headers=headers)
    response.raise_for_status()
    return int(response.json()["id"])


async def _create_tasks(client: httpx.AsyncClient, user: BenchUser, count: int) -> float:
    """`count` tasks through the API, some at once (not completed: no completion mail jobs)."""
    gate = asyncio.Semaphore(SEED_CONCURRENCY)
    headers = {"Authorization": f"Bearer {user.token}"}

    async def one(n: int) -> None:
        async with gate:
            body = {"title": f"delivery #{n}", "description": "a webhook delivery", "tags": ["q3"]}
            (await client.post("/tasks", json=body, headers=headers)).raise_for_status()

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.monotonic() - started


def _db_ticks(pids: list[int]) -> dict[int, int]:
    return {pid: cpu_ticks(pid) for pid in pids}


@dataclass
class Scene:
    """What every run of the scenario shares."""

    ctx: Context
    env: dict[str, str]
    conn: Any  # asyncpg.Connection: the polling connection
    http: httpx.AsyncClient  # to the receiver
    receiver: str
    receiver_pid: int
    user: BenchUser
    timeout: float

    def receiver_ticks(self) -> int:
        return cpu_ticks(self.receiver_pid) + sum(
            cpu_ticks(pid) for pid in descendants(self.receiver_pid)
        )


async def _one_run(scene: Scene, n: int, hook_id: int) -> dict[str, Any]:
    """N workers deliver the user's waiting events to the receiver; the figures."""
    ctx, env, conn, http, receiver = scene.ctx, scene.env, scene.conn, scene.http, scene.receiver
    timeout, receiver_ticks = scene.timeout, scene.receiver_ticks
    expected = int(await conn.fetchval(_WAITING_EVENTS, scene.user.id))
    if expected != ctx.args.deliveries_count:
        log(f"deliveries: {expected} events waiting (asked for {ctx.args.deliveries_count})")
    await _receiver_stats(http, receiver, "/reset")
    holder = await asyncpg.connect(pg_dsn(ctx.args.database_url))
    workers = Processes()
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM event_consumers WHERE name = 'relay' FOR UPDATE")
        own = [await conn.fetchval("SELECT pg_backend_pid()"), holder.get_server_pid()]
        db_now = await conn.fetchval("SELECT now()")
        spawned = time.monotonic()
        python = str(ROOT / ".venv/bin/python")
        for i in range(n):
            log_path = ctx.out / "logs" / f"deliveries-worker-{n}-{i}.log"
            workers.start(
                [python, "manage.py", "worker", "--name", f"bench-{n}-{i}"], env, log_path
            )
        while True:
            registered, relaying = await conn.fetchrow(_READY, db_now)
            if registered >= n and relaying:
                break
            if workers.dead() or time.monotonic() - spawned > 60:
                raise RuntimeError(f"{n} worker(s) not ready; see logs/deliveries-worker-*")
            await asyncio.sleep(POLL_SECONDS)
        await asyncio.sleep(1.0)  # the last one's start-up settles (pools, LISTEN)
        ready = time.monotonic()
        cpu_before = workers.ticks()
        receiver_before = receiver_ticks()
        db_before = _db_ticks([row["pid"] for row in await conn.fetch(_BACKENDS, own)])
        started = time.monotonic()
        await hold.commit()  # the blocked relay goes on: planning, then the deliveries
        statuses: dict[str, int] = {}
        while True:
            statuses = {row["status"]: row["count"] for row in await conn.fetch(_STATUSES, hook_id)}
            if statuses.get("succeeded", 0) + statuses.get("failed", 0) >= expected:
                break
            if workers.dead() or time.monotonic() - started > timeout:
                raise RuntimeError(f"{n} worker(s): only {statuses} of {expected} in {timeout} s")
            await asyncio.sleep(POLL_SECONDS)
        elapsed = time.monotonic() - started
        worker_ms = (workers.ticks() - cpu_before) * 1000 / CLOCK_TICKS
        receiver_ms = (receiver_ticks() - receiver_before) * 1000 / CLOCK_TICKS
        db_after = _db_ticks([row["pid"] for row in await conn.fetch(_BACKENDS, own)])
        # Backends opened during the run count whole; one that closed before the end is lost.
        db_ticks = sum(t - db_before.get(pid, 0) for pid, t in db_after.items() if t)
        db_ms = db_ticks * 1000 / CLOCK_TICKS
        got = await _receiver_stats(http, receiver, "/stats")
    finally:
        workers.stop()
        await holder.close()
    per = max(expected, 1)
    span = (got["last"] - got["first"]) if got["first"] is not None else None
    result = {
        "workers": n,
        "deliveries": expected,
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round(expected / elapsed, 1),
        "startup_s": round(ready - spawned, 2),
        "first_post_after_s": round(got["first"] - started, 3) if got["first"] else None,
        "receiver_span_s": round(span, 3) if span is not None else None,
        "received": got["count"],
        "statuses": statuses,
        "worker_cpu_ms_per_delivery": round(worker_ms / per, 3),
        "db_cpu_ms_per_delivery": round(db_ms / per, 3),
        "receiver_cpu_ms_per_delivery": round(receiver_ms / per, 3),
        "worker_cpu_s": round(worker_ms / 1000, 2),
        "db_cpu_s": round(db_ms / 1000, 2),
    }
    if statuses.get("succeeded", 0) != expected or got["count"] != expected:
        ctx.failures.append(f"deliveries with {n} worker(s): {statuses}, received {got['count']}")
    return result


async def run_deliveries(ctx: Context, shared: list[Server]) -> dict[str, Any]:
    args = ctx.args
    # The run's servers have in-process job workers (JOB_WORKER_IN_PROCESS): they would relay
    # and deliver too. This scenario runs last, on servers and workers of its own.
    for server in shared:
        server.stop()
    env = ctx.env | {"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true", "JOB_WORKER_IN_PROCESS": "false"}
    concurrency = env.get("JOB_CONCURRENCY", "4")
    env["JOB_CONCURRENCY"] = concurrency
    api = new_server(replace(ctx, env=env), "api_deliveries", "main:app", 1)
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    helpers = Processes()
    runs = []
    try:
        pid = helpers.start(
            [sys.executable, str(BENCH / "receiver.py"), str(port)],
            env,
            ctx.out / "logs" / "receiver.log",
        )
        await api.start()
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=60.0) as client,
            httpx.AsyncClient(timeout=10.0) as http,
        ):
            await _wait_receiver(http, receiver)
            user = await register_and_login(client, f"deliv_{secrets.token_hex(3)}")
            conn = await asyncpg.connect(pg_dsn(args.database_url))
            timeout = max(120.0, args.deliveries_count / 5)
            scene = Scene(ctx, env, conn, http, receiver, pid, user, timeout)
            try:
                hook_id = None
                for n in worker_list(args.delivery_workers):
                    hook_id = await _fresh_webhook(client, user, receiver + "/hook", hook_id)
                    seeded = await _create_tasks(client, user, args.deliveries_count)
                    log(f"deliveries: {args.deliveries_count} tasks created in {seeded:.1f} s")
                    run = await _one_run(scene, n, hook_id)
                    runs.append(run)
                    log(
                        f"deliveries: {n} worker(s) {run['deliveries']} in {run['seconds']} s: "
                        f"{run['deliveries_per_s']}/s, worker CPU "
                        f"{run['worker_cpu_ms_per_delivery']} ms, DB CPU "
                        f"{run['db_cpu_ms_per_delivery']} ms per delivery"
                    )
            finally:
                await conn.close()
    finally:
        api.stop()
        helpers.stop()
    return {
        "count": args.deliveries_count,
        "job_concurrency": int(concurrency),
        "runs": runs,
    }
