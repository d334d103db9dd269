"""Completion emails, delivered to a real SMTP server (aiosmtpd) running in this process."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from tests.certificates import self_signed
from tests.conftest import client_for, make_task, make_user
from tests.file_helpers import free_port
from tests.jobs_helpers import settled

SENDER = "Task Manager <tasks@example.org>"


class Inbox:
    """An SMTP handler that keeps what it accepts and can be told to refuse."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.attempts = 0
        self.refusals: list[str] = []  # answers given, in order, before accepting again

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.refusals:
            return self.refusals.pop(0)
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            message = message_from_bytes(envelope.original_content or b"", policy=default_policy)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def background_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("background_tasks")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def _smtp(port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_from": SENDER,
        "smtp_starttls": False,
        "smtp_max_attempts": 3,
        "smtp_retry_backoff": 0.01,
        "smtp_timeout": 5.0,
        **overrides,
    }


async def _app_client(worker_app_factory: Any, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with worker_app_factory(**settings) as app, client_for(app) as client:
        yield client


@pytest.fixture
async def mail_client(
    worker_app_factory: Any, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _app_client(worker_app_factory, **_smtp(smtp_server[1])):
        yield client


async def _complete(client: httpx.AsyncClient, user: Any, task_id: int) -> None:
    response = await client.patch(
        f"/tasks/{task_id}", json={"completed": True}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["completed"] is True


async def test_completing_a_task_emails_its_owner(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    user = await make_user(mail_client)
    task = await make_task(mail_client, user, title="Renew passport")
    await _complete(mail_client, user, task["id"])

    await settled(mail_client)
    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == [user.email]
    (message,) = inbox.messages()
    assert message["To"] == user.email
    assert message["From"] == SENDER
    assert message["Subject"] == "Task completed: Renew passport"
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert '"Renew passport"' in body
    assert f"#{task['id']}" in body
    assert user.username in body


@pytest.mark.parametrize(
    "steps",
    [
        [{"title": "renamed"}],
        [{"completed": False}],
        [{"completed": True}, {"completed": True}],
        [{"completed": True}, {"completed": False}],
    ],
)
async def test_only_false_to_true_sends_an_email(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int], steps: list[dict[str, Any]]
) -> None:
    inbox, _ = smtp_server
    user = await make_user(mail_client)
    task = await make_task(mail_client, user)
    for body in steps:
        response = await mail_client.patch(f"/tasks/{task['id']}", json=body, headers=user.headers)
        assert response.status_code == 200
    expected = 1 if {"completed": True} in steps else 0
    await settled(mail_client)
    assert len(inbox.envelopes) == expected


async def test_racing_completions_of_one_task_send_one_email(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    # The completing PATCH locks the row before reading the value it replaces: of several
    # clients completing the same task at once, exactly one saw it incomplete.
    inbox, _ = smtp_server
    user = await make_user(mail_client)
    task = await make_task(mail_client, user)
    responses = await asyncio.gather(
        *(
            mail_client.patch(
                f"/tasks/{task['id']}", json={"completed": True}, headers=user.headers
            )
            for _ in range(6)
        )
    )
    assert [response.status_code for response in responses] == [200] * 6
    # Six writes: version 1 became 7. A writer that waited for the row lock may answer with
    # the task as it is after it (a later version), but never with one before its own write.
    versions = [int(r.headers["etag"].strip('"')) for r in responses]
    assert all(2 <= version <= 7 for version in versions), versions
    assert 7 in versions
    final = await mail_client.get(f"/tasks/{task['id']}", headers=user.headers)
    assert final.headers["etag"] == '"7"'
    await settled(mail_client)
    assert len(inbox.envelopes) == 1


async def test_creating_a_completed_task_sends_no_email(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    user = await make_user(mail_client)
    await make_task(mail_client, user, completed=True)
    await settled(mail_client)
    assert smtp_server[0].envelopes == []


async def test_bulk_completion_sends_one_email_naming_the_newly_completed_tasks(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    user = await make_user(mail_client)
    first = await make_task(mail_client, user, title="First")
    second = await make_task(mail_client, user, title="Second")
    done = await make_task(mail_client, user, title="Already done", completed=True)
    response = await mail_client.patch(
        "/tasks/bulk",
        json={"task_ids": [first["id"], second["id"], done["id"]], "updates": {"completed": True}},
        headers=user.headers,
    )
    assert response.status_code == 200
    await settled(mail_client)
    (message,) = inbox.messages()
    assert message["Subject"] == "2 tasks completed"
    body = message.get_content()
    assert '"First"' in body
    assert '"Second"' in body
    assert "Already done" not in body


async def test_title_with_line_breaks_cannot_add_mail_headers(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    user = await make_user(mail_client)
    task = await make_task(mail_client, user, title="Done\r\nBcc: victim@example.com")
    await _complete(mail_client, user, task["id"])
    await settled(mail_client)
    (envelope,) = smtp_server[0].envelopes
    assert envelope.rcpt_tos == [user.email]
    (message,) = smtp_server[0].messages()
    assert message["Bcc"] is None
    assert message["Subject"] == "Task completed: Done Bcc: victim@example.com"


async def test_transient_smtp_failures_are_retried_until_delivered(
    mail_client: httpx.AsyncClient, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    inbox.refusals = ["451 4.3.0 Try again later", "421 4.7.0 Busy"]
    user = await make_user(mail_client)
    task = await make_task(mail_client, user)
    await _complete(mail_client, user, task["id"])
    await settled(mail_client)
    assert inbox.attempts == 3
    assert len(inbox.envelopes) == 1


@pytest.mark.parametrize(
    ("refusals", "attempts"),
    [(["451 4.3.0 Try again later"] * 5, 3), (["550 5.1.1 No such user"], 1)],
)
async def test_failing_smtp_server_is_logged_and_never_affects_the_response(
    mail_client: httpx.AsyncClient,
    smtp_server: tuple[Inbox, int],
    background_log: list[logging.LogRecord],
    refusals: list[str],
    attempts: int,
) -> None:
    inbox, _ = smtp_server
    inbox.refusals = refusals
    user = await make_user(mail_client)
    task = await make_task(mail_client, user)
    await _complete(mail_client, user, task["id"])
    await settled(mail_client)
    assert inbox.attempts == attempts  # a permanent (5xx) refusal is not retried
    assert inbox.envelopes == []
    errors = [r for r in background_log if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "completion email failed" in errors[0].getMessage()
    assert all(user.email not in record.getMessage() for record in background_log)


async def test_unreachable_smtp_server_never_affects_the_response(
    worker_app_factory: Any, background_log: list[logging.LogRecord]
) -> None:
    async for client in _app_client(worker_app_factory, **_smtp(free_port())):
        user = await make_user(client)
        task = await make_task(client, user)
        await _complete(client, user, task["id"])
        await settled(client)
    errors = [r.getMessage() for r in background_log if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "attempts=3" in errors[0]


async def test_without_smtp_host_one_line_is_logged_without_the_address(
    worker_app_factory: Any, background_log: list[logging.LogRecord]
) -> None:
    async for client in _app_client(worker_app_factory, smtp_host=None):
        user = await make_user(client)
        task = await make_task(client, user)
        await _complete(client, user, task["id"])
        await settled(client)
    lines = [record.getMessage() for record in background_log]
    # Only the mail's lines: a periodic job may log too (a fresh app's worker runs the storage
    # reconcile, cron minute 41, when it starts within procrastinate's catch-up window of it).
    mail = [line for line in lines if "email" in line]
    assert mail == [f"completion email not sent (SMTP_HOST unset) task_ids={task['id']}"]
    assert all(user.email not in line for line in lines)


# --- STARTTLS and login -------------------------------------------------------------------------


def _accept_only(username: str, password: str) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (username, password)
        return AuthResult(success=ok)

    return authenticate


async def test_starttls_and_login_are_used_when_configured(
    worker_app_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path, "127.0.0.1")
    # The client verifies the server's certificate against the default trust store.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=_accept_only("mailer", "s3cret-pass"),
        auth_required=True,
    )
    controller.start()
    try:
        settings = _smtp(
            port, smtp_starttls=True, smtp_username="mailer", smtp_password=SecretStr("s3cret-pass")
        )
        async for client in _app_client(worker_app_factory, **settings):
            user = await make_user(client)
            task = await make_task(client, user, title="Encrypted")
            await _complete(client, user, task["id"])
            await settled(client)
    finally:
        controller.stop()
    (message,) = inbox.messages()
    assert message["Subject"] == "Task completed: Encrypted"
