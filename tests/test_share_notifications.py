"""Sharing's emails, delivered to a real SMTP server (aiosmtpd): a share tells the recipient and
the owner, someone else's comment or completion tells the owner; each can be turned off, and
share and comment notices go to verified addresses only (completion mail: while
EMAIL_REQUIRE_VERIFIED is off, to unverified ones too)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import User, client_for, make_task, make_user
from tests.jobs_helpers import settled
from tests.test_notifications import Inbox, _smtp, mail_client, smtp_server
from tests.test_sharing import share

__all__ = ["mail_client", "smtp_server"]  # fixtures, used by name


def _to(inbox: Inbox) -> list[tuple[str, str]]:
    return [(str(message["To"]), str(message["Subject"])) for message in inbox.messages()]


async def verified_user(client: httpx.AsyncClient, inbox: Inbox) -> User:
    """A user whose address was verified through the emailed link (then the inbox is empty)."""
    user = await make_user(client)
    sent = await client.post("/notifications/send-verification", headers=user.headers)
    assert sent.status_code == 202, sent.text
    await settled(client)
    (token,) = re.findall(r"token=([\w-]+)", inbox.messages()[-1].get_content())
    verified = await client.post("/notifications/verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    await settled(client)
    inbox.envelopes.clear()
    return user


async def test_sharing_emails_the_recipient_and_the_owner(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    owner, bob = await verified_user(mail_client, inbox), await verified_user(mail_client, inbox)
    task = await make_task(mail_client, owner, title="Budget\nBcc: evil@example.com")
    assert (await share(mail_client, owner, task["id"], bob, "edit")).status_code == 201
    await settled(mail_client)
    sent = _to(inbox)
    assert sorted(address for address, _ in sent) == sorted([bob.email, owner.email])
    to_bob = next(m for m in inbox.messages() if m["To"] == bob.email)
    # (Long subjects are folded on the wire: compare the words.)
    subject = " ".join(str(to_bob["Subject"]).split())
    assert subject == f"{owner.username} shared a task with you: Budget Bcc: evil@example.com"
    assert "Bcc" not in to_bob  # a title cannot add headers
    assert "edit" in to_bob.get_content()
    assert all("evil" not in rcpt for e in inbox.envelopes for rcpt in e.rcpt_tos)


async def test_comments_and_completion_by_others_email_the_owner(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    owner, editor = await verified_user(mail_client, inbox), await make_user(mail_client)
    task = await make_task(mail_client, owner, title="Roof")
    await share(mail_client, owner, task["id"], editor, "edit")
    await settled(mail_client)
    inbox.envelopes.clear()
    path = f"/tasks/{task['id']}"
    await mail_client.post(f"{path}/comments", json={"content": "mine"}, headers=owner.headers)
    await settled(mail_client)
    assert inbox.envelopes == []  # the owner's own comment tells nobody
    await mail_client.post(f"{path}/comments", json={"content": "Tiles?"}, headers=editor.headers)
    done = await mail_client.patch(path, json={"completed": True}, headers=editor.headers)
    assert done.status_code == 200
    await settled(mail_client)
    assert sorted(_to(inbox)) == [
        (owner.email, "New comment on: Roof"), (owner.email, "Task completed: Roof")
    ]  # fmt: skip
    (comment,) = [m for m in inbox.messages() if m["Subject"] == "New comment on: Roof"]
    assert "Tiles?" in comment.get_content()
    assert editor.username in comment.get_content()


async def test_each_kind_of_email_can_be_turned_off(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    owner, bob, carol = [await verified_user(mail_client, inbox) for _ in range(3)]
    url = "/notifications/preferences"
    await mail_client.patch(url, json={"task_shared_with_me": False}, headers=bob.headers)
    await mail_client.patch(url, json={"email_enabled": False}, headers=carol.headers)
    await mail_client.patch(
        url, json={"task_completed": False, "comment_on_my_task": False}, headers=owner.headers
    )
    task = await make_task(mail_client, owner)
    await share(mail_client, owner, task["id"], bob, "edit")
    await share(mail_client, owner, task["id"], carol, "view")
    await settled(mail_client)
    assert _to(inbox) == [(owner.email, f"You shared a task: {task['title']}")] * 2
    await settled(mail_client)
    inbox.envelopes.clear()
    path = f"/tasks/{task['id']}"
    await mail_client.post(f"{path}/comments", json={"content": "hi"}, headers=bob.headers)
    await mail_client.patch(path, json={"completed": True}, headers=bob.headers)
    await settled(mail_client)
    assert inbox.envelopes == []
    await mail_client.patch(url, json={"email_enabled": False}, headers=owner.headers)
    other = await make_task(mail_client, owner)
    await share(mail_client, owner, other["id"], carol, "view")
    await settled(mail_client)
    assert inbox.envelopes == []


async def test_share_and_comment_notices_skip_unverified_addresses(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    owner, reader = await make_user(mail_client), await verified_user(mail_client, inbox)
    task = await make_task(mail_client, owner, title="Fence")
    assert (await share(mail_client, owner, task["id"], reader, "edit")).status_code == 201
    await settled(mail_client)
    assert _to(inbox) == [(reader.email, f"{owner.username} shared a task with you: Fence")]
    await settled(mail_client)
    inbox.envelopes.clear()
    path = f"/tasks/{task['id']}"
    await mail_client.post(f"{path}/comments", json={"content": "ok"}, headers=reader.headers)
    await settled(mail_client)
    assert inbox.envelopes == []  # the owner's address is not verified
    # Completion mail keeps going to an unverified owner while EMAIL_REQUIRE_VERIFIED is off.
    done = await mail_client.patch(path, json={"completed": True}, headers=reader.headers)
    assert done.status_code == 200
    await settled(mail_client)
    assert _to(inbox) == [(owner.email, "Task completed: Fence")]


@pytest.fixture
async def strict_client(
    worker_app_factory: Any, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = {**_smtp(smtp_server[1]), "email_require_verified": True}
    async with worker_app_factory(**settings) as app, client_for(app) as client:
        yield client


async def test_completion_mail_needs_a_verified_address_when_required(
    strict_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    unverified, verified = await make_user(strict_client), await verified_user(strict_client, inbox)
    for user in (unverified, verified):
        task = await make_task(strict_client, user, title="Gate")
        done = await strict_client.patch(
            f"/tasks/{task['id']}", json={"completed": True}, headers=user.headers
        )
        assert done.status_code == 200
    await settled(strict_client)
    assert _to(inbox) == [(verified.email, "Task completed: Gate")]
