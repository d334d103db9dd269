"""The floor: the least a server can do to answer like the API on the benchmarked reads.

A raw ASGI app (no framework) over asyncpg, PyJWT and orjson, served by the same uvicorn with the
same flags and worker count as the API. For each request it does the honest minimum the API's
answer needs, and nothing is cached between requests:

* `GET /tasks/{id}`: verify the JWT (HS256, exp/sub/iat required), then ONE query that checks the
  user still exists and fetches the task and its tags (401 / 404 / 403 / 200 as the API).
* `GET /tasks?limit=N&skip=M`: verify the JWT, ONE query for the page, its tags and the total
  (the API sends X-Total-Count and a Link header, so the floor counts too).
* `GET /health`: `SELECT 1` on the database and a Redis PING, as the API's readiness check does.

Configuration comes from the environment the benchmark gives both servers: DATABASE_URL,
REDIS_URL, SECRET_KEY, DB_POOL_SIZE. Run: `uvicorn floor_app:app --app-dir bench`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import jwt
import orjson
from redis.asyncio import Redis

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_ID = 2**31 - 1
MAX_LIMIT = 100

TASK_COLUMNS = (
    "t.id, t.title, t.description, t.completed, t.priority, t.created_at, t.updated_at, "
    "t.due_date, t.user_id"
)
# One round trip: the user check, the task and its tags. No user row -> 401.
GET_TASK_SQL = f"""
SELECT u.id AS caller, {TASK_COLUMNS},
       COALESCE((SELECT array_agg(g.tag ORDER BY g.position)
                 FROM task_tags g WHERE g.task_id = t.id), '{{}}') AS tags
FROM users u LEFT JOIN tasks t ON t.id = $2
WHERE u.id = $1
"""
# One round trip: the user check, one page in id order with its tags, and the total.
LIST_TASKS_SQL = f"""
SELECT u.id AS caller, p.*
FROM users u
LEFT JOIN LATERAL (
    SELECT {TASK_COLUMNS},
           COALESCE((SELECT array_agg(g.tag ORDER BY g.position)
                     FROM task_tags g WHERE g.task_id = t.id), '{{}}') AS tags,
           count(*) OVER () AS total
    FROM tasks t WHERE t.user_id = u.id
    ORDER BY t.id LIMIT $2 OFFSET $3
) p ON true
WHERE u.id = $1
ORDER BY p.id
"""
TASK_FIELDS = (
    "id",
    "title",
    "description",
    "completed",
    "priority",
    "created_at",
    "updated_at",
    "due_date",
    "tags",
    "user_id",
)

_JSON = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]


class Unauthorized(Exception):
    pass


def _dsn(raw: str) -> str:
    # The API accepts SQLAlchemy spellings; asyncpg wants a plain libpq URL.
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql://" + raw[len(prefix) :]
    return raw


class Floor:
    def __init__(self) -> None:
        self.pool: Any = None
        self.redis: Redis | None = None
        self.secret = os.environ.get("SECRET_KEY", "")

    async def startup(self) -> None:
        size = int(os.environ.get("DB_POOL_SIZE", "10"))
        self.pool = await asyncpg.create_pool(
            _dsn(os.environ["DATABASE_URL"]),
            min_size=1,
            max_size=size,
            server_settings={"application_name": "bench-floor"},
        )
        if os.environ.get("REDIS_URL"):
            self.redis = Redis.from_url(os.environ["REDIS_URL"])

    async def shutdown(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.redis is not None:
            await self.redis.aclose()

    def caller(self, scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    break
                try:
                    claims = jwt.decode(
                        token,
                        self.secret,
                        algorithms=["HS256"],
                        options={"require": ["exp", "sub", "iat"]},
                    )
                except jwt.PyJWTError:
                    break
                subject = claims["sub"]
                if isinstance(subject, str) and subject.isdigit() and len(subject) <= 10:
                    return int(subject)
                break
        raise Unauthorized

    async def get_task(self, scope: Scope, task_id: int) -> tuple[int, bytes]:
        row = await self.pool.fetchrow(GET_TASK_SQL, self.caller(scope), task_id)
        if row is None:
            raise Unauthorized
        if row["id"] is None:
            return 404, _error("Task Not Found", f"Task with ID {task_id} not found")
        if row["user_id"] != row["caller"]:
            return 403, _error("Forbidden", f"Task {task_id} belongs to another user")
        return 200, orjson.dumps({field: row[field] for field in TASK_FIELDS})

    async def list_tasks(self, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        query = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            limit = int(query.get("limit", ["100"])[0])
            skip = int(query.get("skip", ["0"])[0])
        except ValueError:
            return 422, _error("Validation Error", "limit and skip must be integers"), []
        if not 1 <= limit <= MAX_LIMIT or not 0 <= skip <= MAX_ID:
            return 422, _error("Validation Error", "limit or skip out of range"), []
        rows = await self.pool.fetch(LIST_TASKS_SQL, self.caller(scope), limit, skip)
        if not rows:
            raise Unauthorized
        tasks = [{field: row[field] for field in TASK_FIELDS} for row in rows if row["id"]]
        total = rows[0]["total"] or 0
        headers = [(b"x-total-count", str(total).encode()), (b"link", _link(total, skip, limit))]
        return 200, orjson.dumps(tasks), headers

    async def health(self) -> tuple[int, bytes]:
        try:
            await self.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError):
            return 503, orjson.dumps({"status": "unavailable", "database": "unavailable"})
        cache = "memory"
        if self.redis is not None:
            try:
                await self.redis.ping()
                cache = "ok"
            except OSError:
                cache = "unavailable"
        body = {"status": "ok", "database": "ok", "cache": cache, "version": "floor"}
        return 200, orjson.dumps(body)


def _error(title: str, message: str) -> bytes:
    return orjson.dumps({"error": title, "message": message})


def _link(total: int, skip: int, limit: int) -> bytes:
    links = {"first": 0, "last": max(total - 1, 0) // limit * limit}
    if skip + limit < total:
        links["next"] = skip + limit
    if skip > 0:
        links["prev"] = max(skip - limit, 0)
    return ", ".join(
        f'</tasks?skip={offset}&limit={limit}>; rel="{rel}"' for rel, offset in links.items()
    ).encode()


floor = Floor()


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await floor.startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await floor.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    extra: list[tuple[bytes, bytes]] = []
    try:
        if scope["method"] != "GET":
            status, body = 405, _error("Method Not Allowed", "the floor only reads")
        elif path == "/health":
            status, body = await floor.health()
        elif path == "/tasks":
            status, body, extra = await floor.list_tasks(scope)
        elif path.startswith("/tasks/") and path[7:].isdigit() and 0 < int(path[7:]) <= MAX_ID:
            status, body = await floor.get_task(scope, int(path[7:]))
        else:
            status, body = 404, _error("Not Found", "no such route on the floor")
    except Unauthorized:
        status, body = 401, _error("Unauthorized", "Could not validate credentials")
    await _respond(send, status, body, extra)
