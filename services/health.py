"""Readiness: can this instance serve requests right now?"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models import Health
from redis_config import Cache

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


async def check(engine: AsyncEngine, cache: Cache, *, version: str) -> Health:
    database_ok = await _database_state(engine)
    cache_state = await cache.state()
    status: Literal["ok", "degraded", "unavailable"]
    if not database_ok:
        status = "unavailable"
    elif cache_state == "unavailable":
        status = "degraded"
    else:
        status = "ok"
    return Health(
        status=status,
        database="ok" if database_ok else "unavailable",
        cache=cache_state,
        version=version,
    )
