"""Webhooks end to end through the job engine (issue #14): writes commit events, the relay plans
deliveries, delivery jobs send them to a real receiver on 127.0.0.1, failures are retried as
scheduled jobs. On SQLite and on PostgreSQL (each test on a database of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from tests.conftest import client_for, make_task, make_user
from tests.jobs_helpers import settled
from tests.test_sharing import share
from tests.webhook_receiver import Reply, receiving


@pytest.fixture
async def app(worker_app_factory: Callable[..., Any]) -> AsyncIterator[FastAPI]:
    """Private targets allowed (the receiver is on loopback); retries 1 s apart, so a failing
    then recovering receiver is seen within seconds."""
    settings = {
        "webhook_allow_private_targets": True,
        "webhook_retry_schedule": [1],
        "webhook_timeout_seconds": 2.0,
    }
    async with worker_app_factory(**settings) as application:
        yield application


async def _feed(client: httpx.AsyncClient, user: Any) -> list[dict[str, Any]]:
    page = await client.get("/changes", params={"limit": 500}, headers=user.headers)
    assert page.status_code == 200
    changes: list[dict[str, Any]] = page.json()["changes"]
    return changes


async def test_a_receiver_that_fails_then_recovers_gets_every_event_signed_once(
    app: FastAPI,
) -> None:
    # The first three requests fail (500, 503, a timeout): those events are retried.
    failures = [Reply(500), Reply(503), Reply(200, delay=3.0)]
    async with client_for(app) as client:
        with receiving(*failures) as receiver:
            owner = await make_user(client)
            body = {"url": receiver.url(), "events": ["*"]}
            created = await client.post("/webhooks", json=body, headers=owner.headers)
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            await _writes_as(client, owner)
            await settled(app)
            expected = await _feed(client, owner)

    signer = Webhook(secret)
    events: dict[int, list[str]] = {}  # event id → the webhook-ids it arrived with
    for request in receiver.received:
        event = signer.verify(request.body, request.headers)  # raises on a bad signature
        assert orjson.loads(request.body) == event
        events.setdefault(event["id"], []).append(request.headers["webhook-id"])
    # Every event the owner's feed shows arrived, with the feed's exact content ...
    assert sorted(events) == [change["id"] for change in expected]
    by_id = {orjson.loads(r.body)["id"]: orjson.loads(r.body) for r in receiver.received}
    assert [by_id[change["id"]] for change in expected] == expected
    # ... the failed ones again, under the same webhook-id; nothing else twice.
    assert all(len(set(ids)) == 1 for ids in events.values())
    assert sum(len(ids) for ids in events.values()) == len(events) + len(failures)
    assert len(receiver.received) == len(expected) + len(failures)


async def _writes_as(client: httpx.AsyncClient, owner: Any) -> Any:
    """`_writes` with `owner` owning the tasks (the webhook is theirs)."""
    friend = await make_user(client)
    task = await make_task(client, owner, title="Paint the fence")
    path = f"/tasks/{task['id']}"
    await client.patch(path, json={"title": "Paint the whole fence"}, headers=owner.headers)
    await client.post(f"{path}/tags", json=["home"], headers=owner.headers)
    assert (await share(client, owner, task["id"], friend, "edit")).status_code == 201
    await client.post(f"{path}/comments", json={"content": "Blue?"}, headers=friend.headers)
    await client.patch(path, json={"completed": True}, headers=friend.headers)
    other = await make_task(client, owner, title="Gone soon")
    assert (await client.delete(f"/tasks/{other['id']}", headers=owner.headers)).status_code == 204
    return friend


async def _until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.05)


async def test_the_deliveries_log_shows_the_retries_and_redeliver_sends_again(
    app: FastAPI,
) -> None:
    async with client_for(app) as client:
        with receiving(Reply(500)) as receiver:
            user = await make_user(client)
            body = {"url": receiver.url(), "events": ["task.created"]}
            hook = (await client.post("/webhooks", json=body, headers=user.headers)).json()
            task = await make_task(client, user, title="Logged")
            await make_task(client, user, title="Also logged")
            path = f"/tasks/{task['id']}"
            await client.patch(path, json={"title": "Not sent"}, headers=user.headers)
            await settled(app)
            log = await client.get(f"/webhooks/{hook['id']}/deliveries", headers=user.headers)
            retried, once = sorted(log.json(), key=lambda delivery: -delivery["attempts"])
            assert (retried["status"], retried["attempts"], retried["last_status_code"]) == (
                "succeeded", 2, 200
            )  # fmt: skip
            assert (once["status"], once["attempts"]) == ("succeeded", 1)
            assert {d["event_type"] for d in (retried, once)} == {"task.created"}
            assert len(receiver.received) == 3  # the update was not asked for

            path = f"/webhooks/{hook['id']}/deliveries/{retried['id']}/redeliver"
            assert (await client.post(path, headers=user.headers)).status_code == 202
            tested = await client.post(f"/webhooks/{hook['id']}/test", headers=user.headers)
            assert tested.status_code == 202
            await _until(lambda: len(receiver.received) == 5)  # the sweep runs every 5 s
            await settled(app)
    first = next(r for r in receiver.received if r.headers["webhook-id"] == f"msg_{retried['id']}")
    again, test = sorted(receiver.received[3:], key=lambda r: b"webhook.test" in r.body)
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert again.body == first.body
    assert orjson.loads(test.body)["type"] == "webhook.test"
    assert len(receiver.received) == 5
