"""EXPLAIN (ANALYZE, BUFFERS) of the SQL the app really sends for the filtered list and the stats.

Runs the app's own service functions against the bench database, records every statement they
execute, then explains each one with the same parameters. Because it goes through the services,
the plans follow the app as it is optimised. Run from the repository root:

    .venv/bin/python bench/bench_explain.py DATABASE_URL USER_ID [USER_ID ...]

Prints a JSON object {user_id: {"list": [plan, ...], "stats": [plan, ...], "list_generic": [...],
"stats_generic": [...]}} on stdout. EXPLAIN with the parameters shows the plan made for those
values (a custom plan). The app's statements are prepared statements, and from the sixth
execution on a connection PostgreSQL usually runs a generic plan, made once for any values: the
*_generic plans are those (PREPARE, plan_cache_mode = force_generic_plan, EXPLAIN EXECUTE).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_seed import FILTERS  # the filtered list the benchmark drives: explain that one
from sqlalchemy import event, select

from auth import Principal
from db_config import build_engine, read_only
from db_models import Credential
from models import TaskFilters
from services import stats as stats_service
from services.access import act_as
from services.task_store import TaskStore
from settings import Settings


def _literal(value: Any) -> str:
    """A parameter as an SQL literal, for EXECUTE (the prepared statement's casts type it)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date | datetime):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"


async def explain_user(database_url: str, user_id: int) -> dict[str, list[str]]:
    engine = build_engine(Settings(database_url=database_url))
    captured: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    reads = read_only(engine)
    plans: dict[str, list[str]] = {}
    try:
        # The statements check the caller's session (access.caller_clause): use the newest one.
        async with reads.connect() as connection:
            newest = select(Credential.id).where(Credential.user_id == user_id)
            session_id = (await connection.execute(newest.order_by(Credential.id.desc()))).scalar()
        act_as(Principal(user_id, session_id or 0))
        for name in ("list", "stats"):
            captured.clear()
            if name == "list":
                filters = TaskFilters.model_validate(FILTERS)
                await TaskStore(engine).list_page(user_id=user_id, filters=filters)
            else:
                await stats_service.compute_stats(TaskStore(engine), user_id=user_id)
            queries = list(captured)
            plans[name], plans[f"{name}_generic"] = [], []
            async with reads.connect() as connection:
                for statement, parameters in queries:
                    result = await connection.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                    plan = "\n".join(str(row[0]) for row in result)
                    plans[name].append(f"-- {' '.join(statement.split())}\n{plan}")
                    await connection.exec_driver_sql("PREPARE bench_generic AS " + statement)
                    await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                    arguments = ", ".join(_literal(value) for value in parameters)
                    result = await connection.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic({arguments})"
                    )
                    plan = "\n".join(str(row[0]) for row in result)
                    plans[f"{name}_generic"].append(f"-- generic plan, ({arguments})\n{plan}")
                    await connection.exec_driver_sql("RESET plan_cache_mode")
                    await connection.exec_driver_sql("DEALLOCATE bench_generic")
    finally:
        await engine.dispose()
    return plans


async def main(database_url: str, user_ids: list[int]) -> None:
    report = {str(uid): await explain_user(database_url, uid) for uid in user_ids}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(arg) for arg in sys.argv[2:]]))
