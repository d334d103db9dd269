"""Webhooks: the routes (through HTTP), planning deliveries from real writes, single delivery
attempts against a real receiver on 127.0.0.1, and disabling endpoints that keep failing."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from standardwebhooks import Webhook as Verifier

from db_models import utcnow
from services import webhooks
from services.events import EVENTS
from services.webhook_delivery import DELIVERIES, WEBHOOKS
from services.webhook_targets import UnsafeTargetError, check_target, is_public
from settings import Settings
from tests.certificates import self_signed
from tests.conftest import User, assert_error, client_for, make_task, make_user
from tests.webhook_receiver import Reply, receiving

PUBLIC_URL = "https://93.184.215.14/hook"  # an IP literal: no DNS needed to accept it
DELIVERY_KEYS = {
    "id", "event_id", "event_type", "status", "attempts", "last_status_code", "last_error",
    "next_attempt_at", "created_at",
}  # fmt: skip


# These tests call plan() and attempt() themselves: their apps run no job worker, on a
# database of their own, so no relay or delivery job acts behind their back
# (tests/test_webhooks_delivered.py runs the whole path through the jobs).
@pytest.fixture
async def app(worker_app_factory: Callable[..., Any]) -> AsyncIterator[FastAPI]:
    async with worker_app_factory(job_worker_in_process=False) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture
async def open_app(worker_app_factory: Callable[..., Any]) -> AsyncIterator[FastAPI]:
    """An app that allows private targets (WEBHOOK_ALLOW_PRIVATE_TARGETS=true), so endpoints
    can be the test receiver on 127.0.0.1."""
    settings = {"job_worker_in_process": False, "webhook_allow_private_targets": True}
    async with worker_app_factory(**settings) as application:
        yield application


@pytest.fixture
async def open_client(open_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(open_app) as http:
        yield http


async def add_webhook(
    client: httpx.AsyncClient, user: User, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    body = {"url": url, "events": events or ["*"]}
    created = await client.post("/webhooks", json=body, headers=user.headers)
    assert created.status_code == 201, created.text
    hook: dict[str, Any] = created.json()
    return hook


def settings_of(app: FastAPI, **overrides: Any) -> Settings:
    current: Settings = app.state.settings
    return current.model_copy(update=overrides)


async def delivery_row(app: FastAPI, delivery_id: int) -> Any:
    async with app.state.engine.connect() as connection:
        query = select(DELIVERIES).where(DELIVERIES.c.id == delivery_id)
        return (await connection.execute(query)).one()


async def webhook_row(app: FastAPI, webhook_id: int) -> Any:
    async with app.state.engine.connect() as connection:
        query = select(WEBHOOKS).where(WEBHOOKS.c.id == webhook_id)
        return (await connection.execute(query)).one()


async def make_due(app: FastAPI, delivery_id: int) -> None:
    """As if the retry delay had passed."""
    async with app.state.engine.begin() as connection:
        due = update(DELIVERIES).where(DELIVERIES.c.id == delivery_id)
        await connection.execute(due.values(next_attempt_at=utcnow()))


async def planned_test_delivery(client: httpx.AsyncClient, user: User, hook: dict[str, Any]) -> int:
    answer = await client.post(f"/webhooks/{hook['id']}/test", headers=user.headers)
    assert answer.status_code == 202, answer.text
    delivery_id: int = answer.json()["id"]
    return delivery_id


# --- routes ---------------------------------------------------------------------------------


async def test_create_webhook_public_target_shows_secret_once(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    body = {"url": PUBLIC_URL, "events": ["task.completed"], "description": "dashboard"}
    created = await client.post("/webhooks", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_")
    assert len(Verifier(hook["secret"])._whsecret) == 24
    assert {k: hook[k] for k in ("url", "events", "description", "enabled")} == {
        "url": PUBLIC_URL, "events": ["task.completed"], "description": "dashboard",
        "enabled": True,
    }  # fmt: skip
    listed = await client.get("/webhooks", headers=alice.headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [hook["id"]]
    one = await client.get(f"/webhooks/{hook['id']}", headers=alice.headers)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert "secret" not in listed.json()[0]
    assert one.json() == {k: v for k, v in hook.items() if k != "secret"}


async def test_update_webhook_disable_and_enable_clears_marks(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    hook = await add_webhook(client, alice, PUBLIC_URL)
    path = f"/webhooks/{hook['id']}"
    changed = await client.patch(
        path, json={"events": ["task.created", "task.created", "comment.created"]},
        headers=alice.headers,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["task.created", "comment.created"]
    everything = await client.patch(
        path, json={"events": ["task.created", "*"]}, headers=alice.headers
    )
    assert everything.json()["events"] == ["*"]
    unchanged = await client.patch(path, json={}, headers=alice.headers)
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json()["events"] == ["*"]
    off = await client.patch(path, json={"enabled": False}, headers=alice.headers)
    assert off.json()["enabled"] is False
    assert off.json()["disabled_at"] is not None
    async with client._transport.app.state.engine.begin() as connection:  # type: ignore[attr-defined]
        await connection.execute(
            update(WEBHOOKS).where(WEBHOOKS.c.id == hook["id"]).values(failing_since=utcnow())
        )
    on = await client.patch(path, json={"enabled": True}, headers=alice.headers)
    assert on.status_code == 200
    assert (on.json()["enabled"], on.json()["disabled_at"], on.json()["failing_since"]) == (
        True, None, None,
    )  # fmt: skip


async def test_delete_webhook_then_not_found(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    hook = await add_webhook(client, alice, PUBLIC_URL)
    removed = await client.delete(f"/webhooks/{hook['id']}", headers=alice.headers)
    assert removed.status_code == 204
    assert removed.content == b""
    assert_error(await client.get(f"/webhooks/{hook['id']}", headers=alice.headers), 404)
    assert_error(await client.delete(f"/webhooks/{hook['id']}", headers=alice.headers), 404)


async def test_another_users_webhook_not_found(client: httpx.AsyncClient) -> None:
    alice, mallory = await make_user(client), await make_user(client)
    hook = await add_webhook(client, alice, PUBLIC_URL)
    path = f"/webhooks/{hook['id']}"
    assert_error(await client.get(path, headers=mallory.headers), 404, webhook_id=hook["id"])
    assert_error(await client.patch(path, json={"enabled": False}, headers=mallory.headers), 404)
    assert_error(await client.delete(path, headers=mallory.headers), 404)
    assert_error(await client.get(f"{path}/deliveries", headers=mallory.headers), 404)
    assert_error(await client.post(f"{path}/test", headers=mallory.headers), 404)
    assert (await client.get("/webhooks", headers=mallory.headers)).json() == []
    still = await client.get(path, headers=alice.headers)
    assert still.json()["enabled"] is True


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://93.184.215.14/hook", "https://"),
        ("ftp://93.184.215.14/hook", "https://"),
        ("https://127.0.0.1/hook", "127.0.0.1"),
        ("https://10.1.2.3/hook", "10.1.2.3"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://[::1]/hook", "::1"),
        ("https://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1"),
        ("https://[fe80::1]/hook", "fe80::1"),
        ("https://0.0.0.0/hook", "0.0.0.0"),
        ("https://localhost/hook", "resolves to"),
        ("https://user:pw@93.184.215.14/hook", "user name"),
        ("not a url", "https://"),
    ],
)
async def test_create_webhook_unsafe_target_422(
    client: httpx.AsyncClient, url: str, reason: str
) -> None:
    alice = await make_user(client)
    answer = await client.post(
        "/webhooks", json={"url": url, "events": ["*"]}, headers=alice.headers
    )
    body = assert_error(answer, 422, field="url", error="Webhook Target Refused")
    assert reason in body["message"]
    hook = await add_webhook(client, alice, PUBLIC_URL)
    patched = await client.patch(
        f"/webhooks/{hook['id']}", json={"url": url}, headers=alice.headers
    )
    assert_error(patched, 422, field="url")
    assert (await client.get("/webhooks", headers=alice.headers)).json()[0]["url"] == PUBLIC_URL


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC_URL, "events": ["task.exploded"]},
        {"url": PUBLIC_URL, "events": []},
        {"url": PUBLIC_URL},
        {"url": "https://93.184.215.14/" + "a" * 2000, "events": ["*"]},
        {"url": PUBLIC_URL, "events": ["*"], "description": "d" * 501},
        {"url": PUBLIC_URL, "events": ["*"], "secret": "whsec_mine"},
    ],
)
async def test_create_webhook_invalid_body_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    alice = await make_user(client)
    assert_error(await client.post("/webhooks", json=body, headers=alice.headers), 422)
    assert (await client.get("/webhooks", headers=alice.headers)).json() == []


async def test_private_target_allowed_when_setting_on(open_client: httpx.AsyncClient) -> None:
    alice = await make_user(open_client)
    hook = await add_webhook(open_client, alice, "http://127.0.0.1:9/hook")
    assert hook["url"] == "http://127.0.0.1:9/hook"


async def test_webhooks_personal_token_needs_webhooks_scope(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    tokens = {}
    for scope in ("tasks:write", "webhooks:write"):
        made = await client.post(
            "/users/me/tokens", json={"name": scope, "scopes": [scope]}, headers=alice.headers
        )
        assert made.status_code == 201, made.text
        tokens[scope] = {"Authorization": f"Bearer {made.json()['token']}"}
    refused = await client.get("/webhooks", headers=tokens["tasks:write"])
    assert_error(refused, 403, scope="webhooks:write")
    body = {"url": PUBLIC_URL, "events": ["*"]}
    assert (
        await client.post("/webhooks", json=body, headers=tokens["webhooks:write"])
    ).status_code == 201


async def test_test_and_redeliver_make_the_delivery_due(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    hook = await add_webhook(client, alice, PUBLIC_URL)
    before = utcnow()
    tested = await client.post(f"/webhooks/{hook['id']}/test", headers=alice.headers)
    assert tested.status_code == 202, tested.text
    delivery = tested.json()
    assert set(delivery) == DELIVERY_KEYS
    assert (delivery["event_id"], delivery["event_type"], delivery["status"]) == (
        None, "webhook.test", "pending",
    )  # fmt: skip
    app = client._transport.app  # type: ignore[attr-defined]
    row = await delivery_row(app, delivery["id"])
    assert before - timedelta(seconds=1) <= row.next_attempt_at <= utcnow()
    payload = orjson.loads(row.payload)
    assert payload["type"] == "webhook.test"
    assert payload["data"] == {"webhook_id": hook["id"]}
    assert set(payload) == {"id", "type", "occurred_at", "actor_id", "data"}
    async with app.state.engine.begin() as connection:
        done = update(DELIVERIES).where(DELIVERIES.c.id == delivery["id"])
        await connection.execute(done.values(status="failed", next_attempt_at=None))
    path = f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver"
    again = await client.post(path, headers=alice.headers)
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    row = await delivery_row(app, delivery["id"])
    assert (row.status, row.next_attempt_at <= utcnow()) == ("pending", True)
    assert delivery["id"] in await webhooks.due_deliveries(app.state.sessionmaker, utcnow(), 10_000)
    missing = f"/webhooks/{hook['id']}/deliveries/{delivery['id'] + 10_000}/redeliver"
    assert_error(await client.post(missing, headers=alice.headers), 404)


async def test_list_deliveries_newest_first_paged(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    hook = await add_webhook(client, alice, PUBLIC_URL)
    made = [await planned_test_delivery(client, alice, hook) for _ in range(3)]
    path = f"/webhooks/{hook['id']}/deliveries"
    listed = await client.get(path, headers=alice.headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == made[::-1]
    assert all(set(item) == DELIVERY_KEYS for item in listed.json())
    assert listed.headers["x-total-count"] == "3"
    page = await client.get(path, params={"skip": 1, "limit": 1}, headers=alice.headers)
    assert [item["id"] for item in page.json()] == [made[1]]
    assert 'rel="next"' in page.headers["link"]


# --- the target rule over generated addresses -------------------------------------------------

NOT_PUBLIC = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32", "100::/64",
    "2001::/23", "64:ff9b:1::/48", "::ffff:0:0/96",
]  # fmt: skip
PUBLIC = ["8.8.0.0/16", "93.184.0.0/16", "151.101.0.0/16", "2606:4700::/32", "2a00:1450::/32"]


def _addresses(networks: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(networks).flatmap(
        lambda net: st.ip_addresses(network=ipaddress.ip_network(net))
    )


def _literal(address: Any) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


@given(_addresses(NOT_PUBLIC))
@settings(max_examples=200, deadline=None)
def test_target_check_refuses_non_public_addresses(address: Any) -> None:
    assert not is_public(address)
    if address.version == 4:  # the same address in IPv6 clothing: mapped, NAT64, 6to4
        for wrapped in (f"::ffff:{address}", f"64:ff9b::{address}"):
            assert not is_public(ipaddress.IPv6Address(wrapped))
        six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))
        assert not is_public(six_to_four)
    with pytest.raises(UnsafeTargetError):
        asyncio.run(check_target(f"https://{_literal(address)}/h", allow_private=False))
    allowed = asyncio.run(check_target(f"http://{_literal(address)}/h", allow_private=True))
    assert allowed.address == address


@given(_addresses(PUBLIC))
@settings(max_examples=100, deadline=None)
def test_target_check_accepts_public_addresses(address: Any) -> None:
    assert is_public(address)
    target = asyncio.run(check_target(f"https://{_literal(address)}:8443/h", allow_private=False))
    assert target.address == address
    with pytest.raises(UnsafeTargetError):
        asyncio.run(check_target(f"http://{_literal(address)}/h", allow_private=False))


# --- plan() ---------------------------------------------------------------------------------


async def _max_event_id(app: FastAPI) -> int:
    async with app.state.engine.connect() as connection:
        return int((await connection.execute(select(func.max(EVENTS.c.id)))).scalar() or 0)


async def _events_after(app: FastAPI, event_id: int) -> dict[int, str]:
    async with app.state.engine.connect() as connection:
        query = select(EVENTS.c.id, EVENTS.c.type).where(EVENTS.c.id > event_id)
        return {row.id: row.type for row in await connection.execute(query)}


async def _planned(app: FastAPI, webhook_id: int) -> dict[int, tuple[str, str]]:
    async with app.state.engine.connect() as connection:
        query = select(DELIVERIES).where(DELIVERIES.c.webhook_id == webhook_id)
        rows = await connection.execute(query)
        return {row.event_id: (row.event_type, row.payload) for row in rows}


async def test_plan_creates_deliveries_by_visibility_and_filter_once(
    client: httpx.AsyncClient,
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    alice, bob, carol = [await make_user(client) for _ in range(3)]
    everything = await add_webhook(client, alice, PUBLIC_URL)
    completions = await add_webhook(client, alice, PUBLIC_URL, ["task.completed"])
    switched_off = await add_webhook(client, alice, PUBLIC_URL)
    await client.patch(
        f"/webhooks/{switched_off['id']}", json={"enabled": False}, headers=alice.headers
    )
    bobs = await add_webhook(client, bob, PUBLIC_URL)
    carols = await add_webhook(client, carol, PUBLIC_URL)
    start = await _max_event_id(app)

    task = await make_task(client, alice, title="Plan me")
    path = f"/tasks/{task['id']}"
    assert (
        await client.patch(path, json={"title": "Planned"}, headers=alice.headers)
    ).status_code == 200
    assert (
        await client.patch(path, json={"completed": True}, headers=alice.headers)
    ).status_code == 200
    share = {"shared_with_username": bob.username, "permission": "view"}
    assert (
        await client.post(f"{path}/share", json=share, headers=alice.headers)
    ).status_code == 201
    comment = await client.post(f"{path}/comments", json={"content": "Hi"}, headers=bob.headers)
    assert comment.status_code == 201
    await make_task(client, carol, title="Carol's")
    assert (await client.delete(path, headers=alice.headers)).status_code == 204

    events = await _events_after(app, start)
    async with app.state.engine.begin() as connection:
        created = await webhooks.plan(connection, sorted(events))
    async with app.state.engine.begin() as connection:
        assert await webhooks.plan(connection, sorted(events)) == []

    planned_all = await _planned(app, everything["id"])
    types_all = sorted(kind for kind, _ in planned_all.values())
    assert types_all == sorted([
        "task.created", "task.updated", "task.completed", "share.created", "comment.created",
        "task.deleted",
    ])  # fmt: skip
    assert set(planned_all) <= set(events)
    assert [kind for kind, _ in (await _planned(app, completions["id"])).values()] == [
        "task.completed"
    ]
    assert await _planned(app, switched_off["id"]) == {}
    bob_types = {kind for kind, _ in (await _planned(app, bobs["id"])).values()}
    assert {"share.created", "comment.created"} <= bob_types
    assert not bob_types & {"task.created", "task.updated", "task.completed"}
    carol_planned = await _planned(app, carols["id"])
    assert sorted(kind for kind, _ in carol_planned.values()) == ["task.created"]
    hooks = (everything, completions, bobs, carols)
    assert len(created) == sum([len(await _planned(app, hook["id"])) for hook in hooks])
    # Bob's endpoint gets exactly what his change feed shows of these events.
    bobs_feed = await client.get("/changes", params={"limit": 1000}, headers=bob.headers)
    seen = {change["id"] for change in bobs_feed.json()["changes"]} & set(events)
    assert set(await _planned(app, bobs["id"])) == seen

    # The payload is the change feed's item for the event, byte for byte.
    feed = await client.get("/changes", params={"limit": 1000}, headers=alice.headers)
    by_id = {change["id"]: change for change in feed.json()["changes"]}
    for event_id, (_, payload) in planned_all.items():
        assert orjson.loads(payload) == by_id[event_id]


# --- attempt() ------------------------------------------------------------------------------


async def test_attempt_signs_payload_receiver_verifies(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving(Reply(204)) as receiver:
        hook = await add_webhook(open_client, alice, receiver.url())
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        assert (
            await webhooks.attempt(app.state.sessionmaker, app.state.settings, delivery_id) is None
        )
    [request] = receiver.received
    payload = Verifier(hook["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert request.headers["webhook-id"] == f"msg_{delivery_id}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    with pytest.raises(Exception, match="signature"):
        Verifier(webhooks.new_secret()).verify(request.body, request.headers)
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (
        "succeeded", 1, 204, None,
    )  # fmt: skip
    # Done: a second call has nothing to do and sends nothing.
    assert await webhooks.attempt(app.state.sessionmaker, app.state.settings, delivery_id) is None
    assert len(receiver.received) == 1


async def test_attempt_500_then_200_retries_with_same_id(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving(Reply(500), Reply(200)) as receiver:
        hook = await add_webhook(open_client, alice, receiver.url("/hooks?x=1", host="localhost"))
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        sessions, config = app.state.sessionmaker, app.state.settings
        delay = await webhooks.attempt(sessions, config, delivery_id)
        assert delay == 5.0
        row = await delivery_row(app, delivery_id)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
        assert row.last_error == "answered 500"
        assert abs((row.next_attempt_at - utcnow()).total_seconds() - 5) < 2
        assert (await webhook_row(app, hook["id"])).failing_since is not None
        assert await webhooks.attempt(sessions, config, delivery_id) is None  # not due yet
        assert len(receiver.received) == 1
        await make_due(app, delivery_id)
        assert await webhooks.attempt(sessions, config, delivery_id) is None
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{delivery_id}"
    assert first.body == second.body
    assert first.path == "/hooks?x=1"
    assert first.headers["Host"] == f"localhost:{receiver.port}"
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.next_attempt_at) == (
        "succeeded", 2, 200, None,
    )  # fmt: skip
    assert (await webhook_row(app, hook["id"])).failing_since is None


async def test_attempt_hanging_receiver_bounded_by_timeout(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving(Reply(200, delay=5)) as receiver:
        hook = await add_webhook(open_client, alice, receiver.url())
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        started = time.monotonic()
        delay = await webhooks.attempt(
            app.state.sessionmaker, settings_of(app, webhook_timeout_seconds=0.5), delivery_id
        )
        elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 1.0, elapsed
    assert delay == 5.0
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.last_status_code, row.last_error) == (
        "pending", None, "no answer within 0.5 s",
    )  # fmt: skip


async def test_attempt_private_target_refused_at_delivery(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving() as receiver:
        # Accepted while private targets were allowed; by delivery time they are not (as if
        # the name had been re-pointed at a private address).
        hook = await add_webhook(open_client, alice, receiver.url(host="localhost", scheme="https"))
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        strict = settings_of(app, webhook_allow_private_targets=False)
        assert await webhooks.attempt(app.state.sessionmaker, strict, delivery_id) == 5.0
    assert receiver.received == []
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error.startswith("refused at delivery: its host localhost")
    assert "not a public address" in row.last_error


async def test_unresolvable_host_saved_then_refused_by_each_delivery(
    client: httpx.AsyncClient,
) -> None:
    # A name that does not resolve yet cannot be judged when saved (DNS can change): it is
    # accepted, and every delivery resolves it again and fails while it does not resolve.
    app = client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(client)
    url = "https://hooks.not-yet.invalid/hook"  # .invalid never resolves (RFC 2606)
    hook = await add_webhook(client, alice, url)
    assert hook["url"] == url
    moved = await client.patch(
        f"/webhooks/{hook['id']}", json={"url": url + "/v2"}, headers=alice.headers
    )
    assert moved.status_code == 200, moved.text
    delivery_id = await planned_test_delivery(client, alice, hook)
    assert await webhooks.attempt(app.state.sessionmaker, app.state.settings, delivery_id) == 5.0
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error == "refused at delivery: its host hooks.not-yet.invalid does not resolve"


async def test_attempt_redirect_not_followed(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving() as receiver:
        receiver.replies.append(Reply(307, {"Location": receiver.url("/elsewhere")}))
        hook = await add_webhook(open_client, alice, receiver.url())
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        assert (
            await webhooks.attempt(app.state.sessionmaker, app.state.settings, delivery_id) == 5.0
        )
    assert [request.path for request in receiver.received] == ["/hook"]
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.last_status_code) == ("pending", 307)
    assert "redirects are not followed" in row.last_error


async def test_attempt_fails_for_good_after_horizon(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving(Reply(503)) as receiver:
        hook = await add_webhook(open_client, alice, receiver.url())
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        tiny = settings_of(app, webhook_retry_horizon_seconds=1)
        assert await webhooks.attempt(app.state.sessionmaker, tiny, delivery_id) is None
    row = await delivery_row(app, delivery_id)
    assert (row.status, row.attempts, row.last_status_code, row.next_attempt_at) == (
        "failed", 1, 503, None,
    )  # fmt: skip
    assert delivery_id not in await webhooks.due_deliveries(
        app.state.sessionmaker, utcnow(), 10_000
    )


async def test_attempt_disabled_webhook_nothing_to_do(open_client: httpx.AsyncClient) -> None:
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    with receiving() as receiver:
        hook = await add_webhook(open_client, alice, receiver.url())
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        off = await open_client.patch(
            f"/webhooks/{hook['id']}", json={"enabled": False}, headers=alice.headers
        )
        assert off.status_code == 200
        sessions = app.state.sessionmaker
        assert delivery_id not in await webhooks.due_deliveries(sessions, utcnow(), 10_000)
        assert await webhooks.attempt(sessions, app.state.settings, delivery_id) is None
    assert receiver.received == []
    assert (await delivery_row(app, delivery_id)).attempts == 0


async def test_attempt_https_pinned_address_keeps_name_for_tls(
    open_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Connected to 127.0.0.1, the checked address, with TLS for the name: the certificate
    names only `localhost`, so the handshake succeeds only if SNI and the check use the name."""
    app = open_client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(open_client)
    certificate, key = self_signed(tmp_path, "localhost")
    trusting = httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(certificate)), trust_env=False
    )
    with receiving(tls=(certificate, key)) as receiver:
        hook = await add_webhook(open_client, alice, receiver.url(host="localhost", scheme="https"))
        delivery_id = await planned_test_delivery(open_client, alice, hook)
        async with trusting:
            result = await webhooks.attempt(
                app.state.sessionmaker, app.state.settings, delivery_id, client=trusting
            )
        assert result is None, (await delivery_row(app, delivery_id)).last_error
    [request] = receiver.received
    assert request.headers["Host"] == f"localhost:{receiver.port}"
    Verifier(hook["secret"]).verify(request.body, request.headers)
    assert (await delivery_row(app, delivery_id)).status == "succeeded"


async def test_webhook_routes_revoked_session_401(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    hook = await add_webhook(client, alice, PUBLIC_URL)
    assert (await client.post("/auth/logout", headers=alice.headers)).status_code == 204
    assert_error(await client.get("/webhooks", headers=alice.headers), 401)
    assert_error(await client.get(f"/webhooks/{hook['id']}", headers=alice.headers), 401)
    body = {"url": PUBLIC_URL, "events": ["*"]}
    assert_error(await client.post("/webhooks", json=body, headers=alice.headers), 401)


def test_retry_delays_follow_schedule_then_double(base_settings: Settings) -> None:
    from services.webhook_delivery import retry_delay

    assert [retry_delay(base_settings, n) for n in range(1, 7)] == [5, 30, 120, 240, 480, 960]


# --- disable_failing() ----------------------------------------------------------------------


async def test_disable_failing_disables_only_long_failing(client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    alice = await make_user(client)
    old, recent = [await add_webhook(client, alice, PUBLIC_URL) for _ in range(2)]
    now = utcnow()
    async with app.state.engine.begin() as connection:
        for hook, age in ((old, timedelta(days=3, hours=1)), (recent, timedelta(days=2))):
            mark = update(WEBHOOKS).where(WEBHOOKS.c.id == hook["id"])
            await connection.execute(mark.values(failing_since=now - age))
    config: Settings = app.state.settings
    disabled = await webhooks.disable_failing(app.state.sessionmaker, config, now)
    mine = [item for item in disabled if item.user_id == alice.id]
    assert mine == [
        webhooks.DisabledWebhook(old["id"], PUBLIC_URL, alice.id, alice.email, alice.username)
    ]
    assert (await client.get(f"/webhooks/{old['id']}", headers=alice.headers)).json()[
        "enabled"
    ] is False
    assert (await client.get(f"/webhooks/{recent['id']}", headers=alice.headers)).json()["enabled"]
    again = await webhooks.disable_failing(app.state.sessionmaker, config, now)
    assert old["id"] not in [item.webhook_id for item in again]
    notice = webhooks.disabled_notice(mine[0], config)
    assert notice.to == alice.email
    assert PUBLIC_URL in notice.body
    assert f"/webhooks/{old['id']}" in notice.body
