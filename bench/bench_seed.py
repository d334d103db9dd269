"""The data: a fresh database, users registered and tasks created through the API, bulk users
seeded in SQL, and the request plans the wrk scripts replay."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

PASSWORD = "bench-password-123"
VERBS = ["write", "review", "fix", "plan", "ship", "test", "draft", "update", "call", "file"]
NOUNS = ["report", "invoice", "release", "roadmap", "budget", "slides", "backlog", "notes"]
TAGS = ["work", "home", "urgent", "later", "q3", "ops", "docs", "bug"]
PRIORITIES = ["low", "medium", "high"]
# The filtered + searched + sorted list of the scenarios and the scaling runs.
FILTERED_QUERY = (
    "/tasks?completed=false&priority=high&search=report&sort_by=due_date&sort_order=desc&limit=50"
)
FILTERS = {
    "completed": False,
    "priority": "high",
    "search": "report",
    "sort_by": "due_date",
    "sort_order": "desc",
    "limit": 50,
}


@dataclass
class BenchUser:
    id: int
    username: str
    token: str
    task_ids: list[int] = field(default_factory=list)


def pg_dsn(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def database_name(url: str) -> str:
    return urlsplit(pg_dsn(url)).path.lstrip("/")


async def recreate_database(url: str) -> None:
    """Drop and create the bench database (only ever one whose name starts with tm_bench)."""
    name = database_name(url)
    if not name.startswith("tm_bench") or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to drop database {name!r}: its name must start with tm_bench")
    parts = urlsplit(pg_dsn(url))
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(url: str) -> None:
    name = database_name(url)
    if not name.startswith("tm_bench"):
        return
    parts = urlsplit(pg_dsn(url))
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def migrate(root: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [str(root / ".venv/bin/alembic"), "upgrade", "head"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )


def task_body(rng: random.Random, n: int) -> dict[str, Any]:
    verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
    body: dict[str, Any] = {
        "title": f"{verb} the {noun} #{n}",
        "description": f"{verb} {noun}: item {n} of the benchmark data set",
        "priority": rng.choice(PRIORITIES),
        "completed": rng.random() < 0.3,
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
    }
    if rng.random() < 0.8:
        body["due_date"] = (
            f"202{rng.randint(5, 7)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        )
    return body


async def register_and_login(client: httpx.AsyncClient, username: str) -> BenchUser:
    response = await client.post(
        "/auth/register",
        json={"username": username, "email": f"{username}@bench.example.com", "password": PASSWORD},
    )
    response.raise_for_status()
    user_id = int(response.json()["id"])
    response = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    response.raise_for_status()
    return BenchUser(id=user_id, username=username, token=response.json()["access_token"])


async def seed_users(
    base_url: str, *, users: int, tasks_per_user: int, prefix: str, concurrency: int = 16
) -> list[BenchUser]:
    """Register users and create their tasks through the API (POST /tasks), some at once."""
    rng = random.Random(42)
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:

        async def one_user(i: int) -> BenchUser:
            async with gate:
                return await register_and_login(client, f"{prefix}{i}")

        seeded = list(await asyncio.gather(*(one_user(i) for i in range(users))))

        async def one_task(user: BenchUser, n: int) -> None:
            async with gate:
                response = await client.post(
                    "/tasks",
                    json=task_body(rng, n),
                    headers={"Authorization": f"Bearer {user.token}"},
                )
                response.raise_for_status()
                user.task_ids.append(int(response.json()["id"]))

        await asyncio.gather(*(one_task(user, n) for n in range(tasks_per_user) for user in seeded))
    for user in seeded:
        user.task_ids.sort()
    return seeded


BULK_TASKS_SQL = """
INSERT INTO tasks (user_id, title, description, completed, priority, due_date,
                   created_at, updated_at, version)
SELECT $1,
       (ARRAY['write','review','fix','plan','ship','test','draft','update','call','file'])
         [1 + n % 10]
         || ' the ' ||
       (ARRAY['report','invoice','release','roadmap','budget','slides','backlog','notes'])
         [1 + (n / 10) % 8] || ' #' || n,
       'bulk item ' || n || ' of the benchmark data set',
       n % 10 < 3,
       (ARRAY['low','medium','high'])[1 + (n / 7) % 3],
       CASE WHEN n % 5 = 0 THEN NULL ELSE DATE '2025-01-01' + (n * 37) % 1000 END,
       now() - make_interval(secs => $2 - n), now() - make_interval(secs => $2 - n), 1
FROM generate_series(1, $2) AS n
"""
BULK_TAGS_SQL = """
INSERT INTO task_tags (task_id, user_id, tag, position)
SELECT t.id, t.user_id,
       (ARRAY['work','home','urgent','later','q3','ops','docs','bug'])[1 + (t.id + k) % 8], k
FROM tasks t CROSS JOIN generate_series(0, 1) AS k
WHERE t.user_id = $1 AND (t.id + k) % 3 <> 0
"""


async def bulk_seed(dsn: str, user_id: int, count: int) -> None:
    """Give one user `count` tasks straight in SQL (100 000 through the API would take minutes)."""
    conn = await asyncpg.connect(pg_dsn(dsn))
    try:
        async with conn.transaction():
            await conn.execute(BULK_TASKS_SQL, user_id, count)
            await conn.execute(BULK_TAGS_SQL, user_id)
            await conn.execute(
                "UPDATE users SET data_version = data_version + 1, task_count = task_count + $2 "
                "WHERE id = $1",
                user_id,
                count,
            )
        # VACUUM as well as ANALYZE: the state autovacuum leaves a bulk-loaded table in (its
        # insert threshold fires within a minute), with the visibility map set, so index-only
        # scans are possible. Until 2026-11-24 this was ANALYZE alone (see docs/PERFORMANCE.md).
        await conn.execute("VACUUM (ANALYZE) tasks")
        await conn.execute("VACUUM (ANALYZE) task_tags")
    finally:
        await conn.close()


async def first_task_id(dsn: str, user_id: int) -> int:
    conn = await asyncpg.connect(pg_dsn(dsn))
    try:
        value = await conn.fetchval("SELECT min(id) FROM tasks WHERE user_id = $1", user_id)
    finally:
        await conn.close()
    return int(value)


async def backend_pids(dsn: str, application_names: list[str]) -> list[int]:
    """PostgreSQL backends serving the servers under test (for the DB CPU column)."""
    conn = await asyncpg.connect(pg_dsn(dsn))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = ANY($1::text[])",
            application_names,
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


def write_plans(
    plan_dir: Path, users: list[BenchUser], writers: list[BenchUser], *, seed: int = 7
) -> dict[str, Path]:
    """Request plans for the wrk scripts (see bench/lua/plan.lua for the line format).
    `writers` are the users POST /tasks creates tasks for, apart from everyone else's."""
    rng = random.Random(seed)
    plan_dir.mkdir(parents=True, exist_ok=True)
    pairs = [(user, task_id) for user in users for task_id in user.task_ids]
    rng.shuffle(pairs)
    lines: dict[str, list[str]] = {
        "get": [f"GET\t/tasks/{task_id}\t{user.token}" for user, task_id in pairs[:20000]],
        "list50": [
            f"GET\t/tasks?limit=50&skip={skip}\t{user.token}"
            for user in users
            for skip in (0, 50, 100)
        ],
        "filtered": [f"GET\t{FILTERED_QUERY}\t{user.token}" for user in users],
        "stats": [f"GET\t/tasks/stats\t{user.token}" for user in users],
        "health": ["GET\t/health\t"],
        "tokens": [user.token for user in writers],
        "patch_stats": [f"{user.id}\t{user.token}\t{user.task_ids[0]}" for user in users],
    }
    paths = {}
    for name, content in lines.items():
        if name in ("list50", "filtered", "stats"):
            rng.shuffle(content)
        path = plan_dir / f"{name}.plan"
        path.write_text("\n".join(content) + "\n")
        paths[name] = path
    return paths


def server_env(
    *, database_url: str, redis_url: str, secret: str, prefix: str, pool_size: int
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TEST_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=prefix,
        SECRET_KEY=secret,
        ENVIRONMENT="production",
        LOG_LEVEL="WARNING",
        RATE_LIMIT_ENABLED="false",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_KIB="64",
        DB_POOL_SIZE=str(pool_size),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env
