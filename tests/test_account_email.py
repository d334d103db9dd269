"""Password reset and email verification: links delivered to a real SMTP server (aiosmtpd),
single-use tokens, and a reset request that does not reveal whether an address has an account."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from tests.conftest import PASSWORD, assert_error, client_for, fresh_ip, make_user
from tests.jobs_helpers import settled
from tests.test_notifications import Inbox, _smtp, smtp_server  # noqa: F401 (a fixture)

PUBLIC = "https://tasks.example.org"


@pytest.fixture
async def mail_app(
    worker_app_factory: Any,
    smtp_server: tuple[Inbox, int],  # noqa: F811
) -> AsyncIterator[FastAPI]:
    async with worker_app_factory(public_url=PUBLIC, **_smtp(smtp_server[1])) as app:
        yield app


def _link(inbox: Inbox, path: str) -> str:
    """The token in the one link of the newest email, checking the link's shape."""
    body = inbox.messages()[-1].get_content()
    (url,) = re.findall(r"https?://\S+", body)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
    assert parts.path == path
    token: str = parse_qs(parts.query)["token"][0]
    return token


async def test_reset_emails_a_link_whose_token_sets_the_password_once_and_ends_sessions(
    mail_app: FastAPI,
    smtp_server: tuple[Inbox, int],  # noqa: F811
) -> None:
    inbox, _ = smtp_server
    async with client_for(mail_app) as client:
        user = await make_user(client)
        requested = await client.post(
            "/auth/password-reset/request", json={"email": user.email.upper()}
        )
        assert requested.status_code == 202
        await settled(client)
        (message,) = inbox.messages()
        assert message["To"] == user.email
        token = _link(inbox, "/auth/password-reset")
        assert token not in str(await client.get("/users/me", headers=user.headers))
        done = await client.post(
            "/auth/password-reset/verify", json={"token": token, "new_password": "brand-new-pw"}
        )
        assert done.status_code == 200
        assert_error(await client.get("/tasks", headers=user.headers), 401)  # every session
        again = await client.post(
            "/auth/password-reset/verify", json={"token": token, "new_password": "another-pw-1"}
        )
        assert_error(again, 400)
        old = await client.post(
            "/auth/login", json={"username": user.username, "password": PASSWORD}
        )
        assert_error(old, 401)
        new = await client.post(
            "/auth/login", json={"username": user.username, "password": "brand-new-pw"}
        )
        assert new.status_code == 200


@pytest.mark.parametrize("token", ["unknown-token", "x" * 200])
async def test_reset_with_an_unknown_token_is_400(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(
        "/auth/password-reset/verify", json={"token": token, "new_password": "brand-new-pw"}
    )
    assert_error(response, 400)


@pytest.mark.parametrize("token", ["", "has space", "ä", "x" * 201, "a\x00b"])
async def test_reset_with_a_malformed_token_is_422(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post(
        "/auth/password-reset/verify", json={"token": token, "new_password": "brand-new-pw"}
    )
    assert_error(response, 422)


class _ResponseStart:
    """Records how long the app took to start its response: what a client waits for (the
    token is stored and the email sent after it)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.seconds: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seconds.append(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed)


async def test_reset_request_answer_and_timing_do_not_reveal_the_account(
    app_factory: Any,
) -> None:
    # No worker in this app: the jobs the known address's requests defer would run meanwhile.
    async with app_factory(rate_limit_enabled=False, job_worker_in_process=False) as app:
        timed = _ResponseStart(app)
        transport = httpx.ASGITransport(app=timed, client=(fresh_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            user = await make_user(client)
            answers: dict[str, list[httpx.Response]] = {"known": [], "unknown": []}
            times: dict[str, list[float]] = {"known": [], "unknown": []}
            for n in range(30):
                for case, email in (("known", user.email), ("unknown", f"nobody{n}@example.com")):
                    answers[case].append(
                        await client.post("/auth/password-reset/request", json={"email": email})
                    )
                    times[case].append(timed.seconds[-1])
    known, unknown = answers["known"], answers["unknown"]
    assert {r.status_code for r in known + unknown} == {202}
    assert {r.content for r in known} == {r.content for r in unknown}
    assert {frozenset(r.headers) - {"x-request-id"} for r in known + unknown} == {
        frozenset(known[0].headers) - {"x-request-id"}
    }
    median_known, median_unknown = (statistics.median(times[c]) for c in ("known", "unknown"))
    # The same work either way: the medians differ by less than scheduling noise.
    assert abs(median_known - median_unknown) < max(0.002, 0.25 * median_unknown), times


async def test_reset_request_is_limited_per_address_and_per_ip(app: FastAPI) -> None:
    async with client_for(app) as client:
        user = await make_user(client)
    # Per address: three from three different IPs, the fourth refused.
    for n in range(4):
        async with client_for(app) as somewhere:
            response = await somewhere.post(
                "/auth/password-reset/request", json={"email": user.email}
            )
        if n < 3:
            assert response.status_code == 202, response.text
        else:
            assert_error(response, 429)
            assert response.headers["x-ratelimit-limit"] == "3"
            assert "retry-after" in response.headers
    # Per IP: three different addresses from one IP, the fourth refused.
    async with client_for(app) as one_ip:
        for n in range(4):
            response = await one_ip.post(
                "/auth/password-reset/request", json={"email": f"spray{n}{user.email}"}
            )
            assert response.status_code == (202 if n < 3 else 429), response.text


async def test_verification_link_verifies_the_address_once(
    mail_app: FastAPI,
    smtp_server: tuple[Inbox, int],  # noqa: F811
) -> None:
    inbox, _ = smtp_server
    async with client_for(mail_app) as client:
        user = await make_user(client)
        sent = await client.post("/notifications/send-verification", headers=user.headers)
        assert sent.status_code == 202
        await settled(client)
        token = _link(inbox, "/notifications/verify")
        verified = await client.get("/notifications/verify", params={"token": token})
        assert verified.status_code == 200
        assert verified.json() == {"email_verified": True}
        me = await client.get("/users/me", headers=user.headers)
        assert me.json()["email_verified"] is True
        assert_error(await client.get("/notifications/verify", params={"token": token}), 400)
        assert_error(
            await client.post("/notifications/send-verification", headers=user.headers), 409
        )


async def test_verification_by_post_and_a_changed_address_voids_the_token(
    mail_app: FastAPI,
    smtp_server: tuple[Inbox, int],  # noqa: F811
) -> None:
    inbox, _ = smtp_server
    async with client_for(mail_app) as client:
        user = await make_user(client)
        await client.post("/notifications/send-verification", headers=user.headers)
        await settled(client)
        stale = _link(inbox, "/notifications/verify")
        new_email = f"moved.{user.email}"
        await client.patch("/users/me", json={"email": new_email}, headers=user.headers)
        assert_error(await client.post("/notifications/verify", json={"token": stale}), 400)
        await client.post("/notifications/send-verification", headers=user.headers)
        await settled(client)
        assert inbox.messages()[-1]["To"] == new_email
        fresh = _link(inbox, "/notifications/verify")
        verified = await client.post("/notifications/verify", json={"token": fresh})
        assert verified.status_code == 200
        assert verified.json() == {"email_verified": True}


async def test_verification_needs_a_token_and_a_bearer(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/notifications/send-verification"), 401)
    assert_error(await client.get("/notifications/verify"), 422)
    assert_error(await client.get("/notifications/verify", params={"token": "nope"}), 400)
