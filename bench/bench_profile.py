"""py-spy on a running API worker under load: where the CPU time of a request goes.

Samples only busy time (py-spy skips idle threads), so the shares are of the CPU the worker
spent, not of wall time. Writes the raw collapsed stacks and returns the top frames.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

# py-spy raw frames look like "function (package/module.py:123)". The first path component
# names the library; the app's own modules are listed in pyproject's known-first-party.
LIBRARIES = {
    "asyncpg": "asyncpg (driver)",
    "sqlalchemy": "SQLAlchemy",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "fastapi": "FastAPI",
    "starlette": "Starlette",
    "jwt": "PyJWT",
    "limits": "limits",
    "uvicorn": "uvicorn",
    "anyio": "anyio (thread pool)",
    "redis": "redis",
    "greenlet": "SQLAlchemy",
}
APP = {
    "auth.py", "background_tasks.py", "circuit_breaker.py", "db_config.py", "db_models.py",
    "dependencies.py", "exceptions.py", "logging_config.py", "main.py", "models.py",
    "rate_limit_config.py", "redis_config.py", "routers", "services", "settings.py", "storage.py",
    "request_context.py", "rate_limit_storage.py", "idempotency.py", "metrics.py",
}  # fmt: skip
# Costs worth naming: the share of busy samples whose stack contains any of the needles.
MARKERS = {
    "pool pre-ping (SELECT ; per checkout)": ["_do_ping", "do_ping", "ping (sqlalchemy"],
    "BEGIN (asyncpg Transaction.start)": ["Transaction.start"],
    "session close / ROLLBACK": ["Session.close", "rollback"],
    "sync dependencies hopping to the thread pool": ["run_in_threadpool", "run_sync"],
    "FastAPI dependency solving (incl. what the deps await)": ["solve_dependencies"],
    "JWT decode": ["jwt/"],
    "ORM: compile, cache key, identity map, loading": [
        "orm_pre_session_exec", "_generate_cache_key", "_identity_lookup", "loading.py",
        "InstanceState", "instrumentation.py",
    ],
    "response: pydantic validate + dump": ["serialize_response", "validate_python", "dump_json"],
    "Link/pagination headers": ["_pagination_headers"],
    "RequestContextMiddleware own work (uuid, headers, log call)": [
        "uuid4", "MutableHeaders", "Logger.info",
    ],
}  # fmt: skip


def _path(frame: str) -> str:
    start = frame.rfind(" (")
    return frame[start + 2 :].rstrip(")").rsplit(":", 1)[0] if start >= 0 else ""


def _function(frame: str) -> str:
    return frame.rsplit(":", 1)[0] + ")" if " (" in frame else frame


def bucket(frames: list[str]) -> str:
    """The innermost library a sample is in: app code, a named library, or the stdlib."""
    for frame in reversed(frames):
        head = _path(frame).split("/", 1)[0]
        if head in APP:
            return "app"
        if head in LIBRARIES:
            return LIBRARIES[head]
    return "stdlib / interpreter"


def _idle(frames: list[str]) -> bool:
    # Worker threads parked on their queue, and samples with no Python frame at all.
    return not frames or not frames[0] or frames[-1].startswith("Condition.wait")


def summarise(collapsed: str, top: int = 25) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [frame.strip() for frame in stack.split(";")]
        if not count_text.isdigit() or _idle(frames):
            continue
        count = int(count_text)
        total += count
        leaf[_function(frames[-1])] += count
        buckets[bucket(frames)] += count
        for name in {_function(f) for f in frames if _path(f).split("/", 1)[0] != "uvicorn"}:
            inclusive[name] += count
        for label, needles in MARKERS.items():
            if any(needle in stack for needle in needles):
                markers[label] += count

    def share(counter: Counter[str], n: int = top) -> list[tuple[str, float]]:
        return [(name, round(100 * k / total, 1)) for name, k in counter.most_common(n)]

    return {
        "samples": total,
        "markers_pct": share(markers, len(MARKERS)),
        "by_library_pct": share(buckets),
        "self_pct": share(leaf),
        "inclusive_pct": share(inclusive, 40),
    }


async def profile_scenario(
    *, py_spy: str, pid: int, seconds: int, load: Coroutine[Any, Any, Any], out: Path
) -> dict[str, Any]:
    """Record `pid` for `seconds` while `load` (a wrk run a bit longer than that) drives it."""
    load_task = asyncio.create_task(load)
    await asyncio.sleep(1)
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
        "--format", "raw", "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    result = await load_task
    if proc.returncode != 0 or not out.exists():
        return {"error": err.decode(errors="replace")[-2000:]}
    summary = summarise(out.read_text())
    summary["rps_under_profiler"] = round(result.rps, 1)
    return summary
