"""Adversarial inputs (OWASP API Top 10 style): none may produce a 500 or another user's data."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import httpx
import jwt
import pytest
from packaging.version import Version

from routers.auth import MAX_FORM_FIELD_BYTES, MAX_FORM_FIELDS
from services.uploads import MAX_PART_HEADER_BYTES, MAX_PARTS
from tests.conftest import PASSWORD, assert_error, make_task, make_user, unique_name
from tests.file_helpers import PNG

SECRET = "test-secret-key-that-is-long-enough-for-hs256"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _valid_token(user_id: int, **claims: Any) -> str:
    now = datetime.now(UTC)
    payload = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=5), **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


async def test_tampered_payload_with_original_signature_is_401(client: httpx.AsyncClient) -> None:
    victim, attacker = await make_user(client), await make_user(client)
    header, _, signature = _valid_token(attacker.id).split(".")
    forged_payload = _b64({"sub": str(victim.id), "iat": 1, "exp": 9999999999})
    forged = f"{header}.{forged_payload}.{signature}"
    response = await client.get("/tasks", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "none", "HS384"])
async def test_tokens_with_other_algorithms_are_401(client: httpx.AsyncClient, alg: str) -> None:
    user = await make_user(client)
    header = _b64({"alg": alg, "typ": "JWT"})
    payload = _b64({"sub": str(user.id), "iat": 1, "exp": 9999999999})
    token = f"{header}.{payload}.{_b64({'sig': 'x'})}"
    assert_error(await client.get("/tasks", headers={"Authorization": f"Bearer {token}"}), 401)


async def test_token_not_yet_valid_is_401(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    future = datetime.now(UTC) + timedelta(hours=1)
    token = _valid_token(user.id, nbf=future)
    assert_error(await client.get("/tasks", headers={"Authorization": f"Bearer {token}"}), 401)


async def test_token_of_a_user_that_no_longer_exists_is_401(client: httpx.AsyncClient) -> None:
    token = _valid_token(2_000_000_000)
    assert_error(await client.get("/tasks", headers={"Authorization": f"Bearer {token}"}), 401)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer " + "x" * 16_384, "Bearer a.b.c.d.e", "Bearer \u00e9t\u00e9", "bearer", "Token abc"],
)
async def test_malformed_authorization_headers_are_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get(
        "/tasks", headers=[(b"Authorization", authorization.encode("utf-8"))]
    )
    assert_error(response, 401)


async def test_five_megabyte_password_is_refused_before_hashing(
    client: httpx.AsyncClient,
) -> None:
    name = unique_name()
    huge = {"username": name, "email": f"{name}@example.com", "password": "p" * 5_000_000}
    assert_error(await client.post("/auth/register", json=huge), 413)
    login = {"username": name, "password": "p" * 5_000_000}
    assert_error(await client.post("/auth/login", json=login), 413)


async def test_ten_thousand_id_bulk_body_is_422(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    body = {"task_ids": list(range(1, 10_001)), "updates": {"completed": True}}
    assert_error(await client.patch("/tasks/bulk", json=body, headers=user.headers), 422)


async def test_no_response_ever_carries_a_password_hash_or_storage_key(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    task = await make_task(client, user, tags=["x"])
    upload = await client.post(
        f"/tasks/{task['id']}/files",
        files={"file": ("pic.png", PNG, "image/png")},
        headers=user.headers,
    )
    assert upload.status_code == 201
    file_id = upload.json()["id"]
    responses = [
        upload,
        await client.get("/tasks", headers=user.headers),
        await client.get(f"/tasks/{task['id']}", headers=user.headers),
        await client.get(f"/tasks/{task['id']}/files", headers=user.headers),
        await client.get(f"/files/{file_id}", headers=user.headers),
        await client.get("/tasks/stats", headers=user.headers),
        await client.post("/auth/login", json={"username": user.username, "password": PASSWORD}),
    ]
    for response in responses:
        assert response.status_code == 200 or response.status_code == 201
        text = response.content.decode("latin-1")
        assert "$2b$" not in text
        assert "hashed_password" not in text
        assert "attachments/" not in text
        assert "storage_key" not in text


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "bomb") -> bytes:
    chunks = []
    for headers, body in parts:
        chunks.append(f"--{boundary}\r\n{headers}\r\n\r\n".encode() + body + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


async def test_multipart_with_thousands_of_parts_is_refused_cleanly(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    parts = [(f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(20_000)]
    response = await client.post(
        f"/tasks/{task['id']}/files",
        content=_multipart(parts),
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=bomb"},
    )
    assert 400 <= response.status_code < 500, response.status_code
    assert response.json()["error"]
    listing = await client.get(f"/tasks/{task['id']}/files", headers=user.headers)
    assert listing.json() == []


async def test_multipart_with_a_huge_part_header_is_refused_cleanly(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    header = 'Content-Disposition: form-data; name="file"; filename="a.png"\r\nX-Junk: ' + (
        "j" * 2_000_000
    )
    response = await client.post(
        f"/tasks/{task['id']}/files",
        content=_multipart([(header, PNG)]),
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=bomb"},
    )
    assert 400 <= response.status_code < 500, response.status_code
    assert response.json()["error"]


async def test_oauth2_form_with_many_fields_is_refused_cleanly(client: httpx.AsyncClient) -> None:
    form = "&".join(f"f{i}=x" for i in range(50_000))
    response = await client.post(
        "/auth/token",
        content=f"username=a&password=b&{form}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500, response.status_code


@pytest.mark.parametrize(
    ("package", "minimum"),
    [
        # Floors: the first releases without known vulnerabilities (python-multipart, starlette),
        # and the current majors of the security-relevant libraries.
        ("python-multipart", "0.0.32"),
        ("starlette", "1.3.1"),
        ("PyJWT", "2.15.1"),
        ("bcrypt", "5.0.0"),
        ("SQLAlchemy", "2.1.9"),
        ("fastapi", "0.163.2"),
    ],
)
def test_security_relevant_dependencies_are_at_safe_versions(package: str, minimum: str) -> None:
    # pip-audit cannot reach a vulnerability database from CI machines; this pins the floor.
    assert Version(version(package)) >= Version(minimum)


def test_dependencies_we_replaced_are_not_installed() -> None:
    from importlib.metadata import PackageNotFoundError

    for package in ("python-jose", "passlib", "ecdsa", "psycopg2", "psycopg2-binary"):
        with pytest.raises(PackageNotFoundError):
            version(package)


@pytest.mark.parametrize(("parts", "expected"), [(MAX_PARTS, 201), (MAX_PARTS + 1, 400)])
async def test_multipart_parts_are_bounded_exactly(
    client: httpx.AsyncClient, parts: int, expected: int
) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    fields = [(f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(parts - 1)]
    file = ('Content-Disposition: form-data; name="file"; filename="a.png"', PNG)
    response = await client.post(
        f"/tasks/{task['id']}/files",
        content=_multipart([*fields, file]),
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=bomb"},
    )
    assert response.status_code == expected, response.text
    if expected == 400:
        assert f"more than {MAX_PARTS} parts" in response.json()["message"]


@pytest.mark.parametrize(("lines", "expected"), [(2, 201), (3, 400)])
async def test_multipart_part_headers_are_bounded_exactly(
    client: httpx.AsyncClient, lines: int, expected: int
) -> None:
    # python-multipart bounds each header line (4 KiB) and their number (8); the upload also
    # bounds a part's header bytes in all (MAX_PART_HEADER_BYTES), as it streams.
    user = await make_user(client)
    task = await make_task(client, user)
    junk = "".join(f"\r\nX-Junk-{i}: {'j' * 3000}" for i in range(lines))
    assert (lines * 3000 > MAX_PART_HEADER_BYTES) == (expected == 400)
    header = f'Content-Disposition: form-data; name="file"; filename="a.png"{junk}'
    response = await client.post(
        f"/tasks/{task['id']}/files",
        content=_multipart([(header, PNG)]),
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=bomb"},
    )
    assert response.status_code == expected, response.text
    if expected == 400:
        assert f"exceed {MAX_PART_HEADER_BYTES} bytes" in response.json()["message"]


async def test_token_form_is_urlencoded_with_bounded_fields(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    good = {"username": user.username, "password": user.password}
    ok = await client.post("/auth/token", data=good)
    assert ok.status_code == 200, ok.text
    extra = {f"f{i}": "x" for i in range(MAX_FORM_FIELDS - len(good) + 1)}
    assert_error(await client.post("/auth/token", data={**good, **extra}), 400)
    big = {**good, "scope": "s" * (MAX_FORM_FIELD_BYTES + 1)}
    assert_error(await client.post("/auth/token", data=big), 400)
    as_multipart = await client.post("/auth/token", data=good, files={"x": ("x.txt", b"x")})
    assert_error(as_multipart, 415)
