"""Readiness: can this instance serve requests right now?"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models import Health
from redis_config import Cache
from storage import Storage

logger = logging.getLogger(__name__)

DB_CHECK_TIMEOUT = 2.0


async def _database_state(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        logger.warning("health check: database unavailable: %s", type(exc).__name__)
        return False
    return True


async def _storage_state(storage: Storage) -> bool:
    problem = await storage.problem()
    if problem:
        logger.warning("health check: storage unavailable: %s", problem)
    return problem is None


async def check(engine: AsyncEngine, cache: Cache, storage: Storage, *, version: str) -> Health:
    """`unavailable` (503) when the database or the file store cannot serve; `degraded` (200)
    when only the cache is down, which the API works without."""
    database_ok = await _database_state(engine)
    storage_ok = await _storage_state(storage)
    cache_state = await cache.state()
    status: Literal["ok", "degraded", "unavailable"]
    if not (database_ok and storage_ok):
        status = "unavailable"
    elif cache_state == "unavailable":
        status = "degraded"
    else:
        status = "ok"
    return Health(
        status=status,
        database="ok" if database_ok else "unavailable",
        cache=cache_state,
        storage="ok" if storage_ok else "unavailable",
        version=version,
    )
