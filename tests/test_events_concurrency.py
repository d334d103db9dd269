"""The change feed under concurrent writers on PostgreSQL: an event whose transaction commits
after later ones is neither skipped nor repeated by a reader following next_cursor."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from db_models import utcnow
from services import event_writes
from tests.conftest import make_task, make_user
from tests.jobs_helpers import readable
from tests.test_events_feed import all_changes, changes

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="needs PostgreSQL (TEST_DATABASE_URL): SQLite serialises its writers",
)


async def test_late_commit_is_read_after_earlier_ones(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    seen: list[dict[str, Any]] = []
    cursor = None
    async with app.state.engine.connect() as held:
        transaction = await held.begin()
        row = {**task, "title": "held", "version": 2}
        event = event_writes.task_updated(
            user.id, row, {"title": {"old": "A task", "new": "held"}}, False
        )
        await event_writes.record(held, [event], utcnow())  # its id is allocated now
        later = [await make_task(client, user, title=f"after{n}") for n in range(5)]
        page = await changes(client, user)
        # Nothing at or after the open transaction is handed out yet: it may still commit.
        seen.extend(page["changes"])
        cursor = page["next_cursor"]
        assert [e["type"] for e in seen] == ["task.created"]
        await transaction.commit()
    await readable(client)  # no other transaction (a job's, another test's) is older than it
    while True:
        page = await changes(client, user, cursor)
        seen.extend(page["changes"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    titles = [e["data"]["task"]["title"] for e in seen]
    assert titles == ["A task", "held", *(t["title"] for t in later)]
    assert len({e["id"] for e in seen}) == len(seen)
    ids = [e["id"] for e in seen]
    assert ids[1] < ids[2]  # allocated before the later ones, committed after them


async def test_many_writers_while_a_reader_follows(client: httpx.AsyncClient) -> None:
    owner = await make_user(client)
    seen: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def writer(n: int) -> list[int]:
        made = []
        for k in range(5):
            made.append((await make_task(client, owner, title=f"w{n}-{k}"))["id"])
        return made

    async def reader() -> None:
        cursor = None
        while True:
            finished = done.is_set()
            if finished:  # every writer committed: wait until the horizon has passed them
                await readable(client)
            page = await changes(client, owner, cursor, limit=7)
            seen.extend(page["changes"])
            cursor = page["next_cursor"]
            if finished and not page["has_more"]:
                return
            await asyncio.sleep(0)

    follow = asyncio.create_task(reader())
    made = await asyncio.gather(*(writer(n) for n in range(12)))
    done.set()
    await follow
    ids = sorted(i for batch in made for i in batch)
    assert sorted(e["data"]["task"]["id"] for e in seen) == ids
    assert len({e["id"] for e in seen}) == len(seen)
    assert await all_changes(client, owner) == seen
