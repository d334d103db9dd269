"""One input boundary, walked with generated inputs (hypothesis, a fresh seed every run).

Classes of input, not instances: any text (NUL, controls, every plane, lone surrogates), any
integer a client controls (ids, paging, the versions in If-Match), any date, any JSON type. The
property is the same everywhere: the answer is one the schema documents, never a 500, and what
is accepted is stored exactly, identically on SQLite and PostgreSQL. A failure prints the
example and the seed to replay it (`--hypothesis-seed=N`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models import MAX_ID, TaskFilters, TaskUpdate
from tests.conftest import assert_error, client_for, make_task, make_user

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written into the work tree; the seed is printed on failure
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Every character but surrogates (JSON cannot carry them raw; see the escape test), NUL and the
# other controls included, and the astral planes.
TEXT = st.text(st.characters(codec="utf-8"), max_size=80)
EDGE_TEXT = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "\x00", "a\x00", "\x00a", "\t", "\u2028", "\ufeff", "\U0010ffff"]),
    st.text(st.characters(codec="utf-8"), min_size=190, max_size=1100),
)
HUGE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, MAX_ID, MAX_ID + 1, 2**32, 2**63 - 1, 2**63, 2**64, -1, -(2**63)]),
)


@pytest.fixture
async def quiet_client(app_factory: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app without rate limits: these tests send hundreds of requests."""
    async with app_factory(rate_limit_enabled=False) as app, client_for(app) as http:
        yield http


def _valid_update(body: dict[str, Any]) -> bool:
    try:
        TaskUpdate.model_validate(body)
    except ValidationError:
        return False
    return True


@EXAMPLES
@given(title=EDGE_TEXT, description=EDGE_TEXT, tag=EDGE_TEXT)
async def test_any_text_is_stored_exactly_or_refused_with_a_422_naming_the_field(
    quiet_client: httpx.AsyncClient, title: str, description: str, tag: str
) -> None:
    client = quiet_client
    user = await make_user(client)
    task = await make_task(client, user)
    path = f"/tasks/{task['id']}"
    for field, value in (("title", title), ("description", description), ("tags", [tag])):
        body = {field: value}
        response = await client.patch(path, json=body, headers=user.headers)
        if not _valid_update(body):
            detail = assert_error(response, 422)["detail"]
            assert any(error["loc"][:2] == ["body", field] for error in detail), detail
            continue
        assert response.status_code == 200, (body, response.text)
        stored = (await client.get(path, headers=user.headers)).json()
        expected = {"title": title.strip(), "description": description, "tags": [tag.strip()]}
        assert stored[field] == expected[field]
    if "\x00" in title + description + tag:  # the class the database cannot store
        refused = await client.patch(
            path, json={"title": "t\x00", "description": "d\x00"}, headers=user.headers
        )
        assert {e["loc"][1] for e in assert_error(refused, 422)["detail"]} == {
            "title",
            "description",
        }


@EXAMPLES
@given(search=EDGE_TEXT, tag=EDGE_TEXT)
async def test_any_query_text_is_answered_or_refused_never_a_500(
    quiet_client: httpx.AsyncClient, search: str, tag: str
) -> None:
    user = await make_user(quiet_client)
    await make_task(quiet_client, user, title="needle", tags=["x"])
    params = {"search": search, "tag": tag}
    response = await quiet_client.get("/tasks", params=params, headers=user.headers)
    try:
        TaskFilters.model_validate(params)
    except ValidationError:
        assert_error(response, 422)
        return
    assert response.status_code == 200, (params, response.text)
    assert "\x00" not in search + tag


@EXAMPLES
@given(tag=EDGE_TEXT.filter(lambda tag: tag not in (".", "..")))  # dot segments: another path
async def test_any_tag_in_a_path_is_answered_or_refused_never_a_500(
    quiet_client: httpx.AsyncClient, tag: str
) -> None:
    user = await make_user(quiet_client)
    task = await make_task(quiet_client, user, tags=["kept"])
    url = f"/tasks/{task['id']}/tags/{quote(tag, safe='')}"
    response = await quiet_client.delete(url, headers=user.headers)
    if not tag or any(ord(c) < 0x20 or ord(c) == 0x7F for c in tag) or len(tag) > 50:
        detail = assert_error(response, 422)["detail"]
        assert detail[0]["loc"] == ["path", "tag"], detail
    elif tag == "kept":
        assert response.status_code == 200
    else:
        assert_error(response, 404)  # a tag the task does not have


@EXAMPLES
@given(username=EDGE_TEXT, password=EDGE_TEXT)
async def test_any_credentials_are_refused_with_401_or_422_never_a_500(
    quiet_client: httpx.AsyncClient, username: str, password: str
) -> None:
    body = {"username": username, "password": password}
    as_json = await quiet_client.post("/auth/login", json=body)
    assert as_json.status_code in (401, 422), as_json.text
    # The form also bounds each field's bytes (400 past them).
    as_form = await quiet_client.post("/auth/token", data=body)
    assert as_form.status_code in (400, 401, 422), as_form.text
    if "\x00" in username + password:
        assert_error(as_json, 422)
        assert as_form.status_code in (400, 422)


@EXAMPLES
@given(code_point=st.integers(min_value=0xD800, max_value=0xDFFF))
async def test_a_lone_surrogate_in_json_is_a_422(
    quiet_client: httpx.AsyncClient, code_point: int
) -> None:
    user = await make_user(quiet_client)
    raw = '{"title": "a\\u%04x"}' % code_point  # noqa: UP031  (the escape must stay literal)
    response = await quiet_client.post(
        "/tasks", content=raw, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert_error(response, 422)


@EXAMPLES
@given(task_id=HUGE, skip=HUGE, limit=HUGE, version=HUGE)
async def test_any_integer_a_client_controls_is_bounded_never_a_500(
    quiet_client: httpx.AsyncClient, task_id: int, skip: int, limit: int, version: int
) -> None:
    client = quiet_client
    user = await make_user(client)
    task = await make_task(client, user)
    got = await client.get(f"/tasks/{task_id}", headers=user.headers)
    in_range = 0 < task_id <= MAX_ID
    expected = {200, 403, 404} if in_range else {404, 405, 422}
    assert got.status_code in expected, (task_id, got.text)
    page = await client.get("/tasks", params={"skip": skip, "limit": limit}, headers=user.headers)
    valid_page = 0 <= skip <= MAX_ID and 1 <= limit <= 100
    assert page.status_code == (200 if valid_page else 422), page.text
    bulk = {"task_ids": [task["id"], task_id], "updates": {"completed": True}}
    changed = await client.patch("/tasks/bulk", json=bulk, headers=user.headers)
    assert changed.status_code in ({200, 404} if in_range else {422}), changed.text
    before = (await client.get(f"/tasks/{task['id']}", headers=user.headers)).headers["etag"]
    if_match = {**user.headers, "If-Match": f'"{abs(version)}"'}
    patched = await client.patch(f"/tasks/{task['id']}", json={"title": "x"}, headers=if_match)
    assert patched.status_code == (200 if f'"{abs(version)}"' == before else 412), patched.text


@EXAMPLES
@given(due=st.dates(), after=st.dates(), before=st.dates())
async def test_any_date_is_stored_or_compared_exactly_never_an_overflow(
    quiet_client: httpx.AsyncClient, due: date, after: date, before: date
) -> None:
    user = await make_user(quiet_client)
    task = await make_task(quiet_client, user, due_date=due.isoformat())
    assert task["due_date"] == due.isoformat()
    params = {"created_after": after.isoformat(), "created_before": before.isoformat()}
    listed = await quiet_client.get("/tasks", params=params, headers=user.headers)
    assert listed.status_code == 200, listed.text
    today = datetime.now(UTC).date()
    # The task was created today (UTC): both bounds are inclusive days.
    assert [t["id"] for t in listed.json()] == ([task["id"]] if after <= today <= before else [])


@EXAMPLES
@given(
    wrong=st.one_of(
        st.text(st.characters(categories=["Nd"]), min_size=1, max_size=5),
        st.booleans(),
        # JSON Schema calls 2.0 an integer (so does the API); 2.5 is not.
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
async def test_an_integer_field_takes_json_integers_only(
    quiet_client: httpx.AsyncClient, wrong: Any
) -> None:
    user = await make_user(quiet_client)
    task = await make_task(quiet_client, user)
    body = {"task_ids": [task["id"], wrong], "updates": {"completed": True}}
    response = await quiet_client.patch("/tasks/bulk", json=body, headers=user.headers)
    detail = assert_error(response, 422)["detail"]
    assert any(error["loc"][:2] == ["body", "task_ids"] for error in detail), detail
    unchanged = await quiet_client.get(f"/tasks/{task['id']}", headers=user.headers)
    assert unchanged.json()["completed"] is False


def test_generated_bodies_stay_json() -> None:
    # The strategies above send what json.dumps makes of them: no lone surrogate sneaks in raw.
    assert json.dumps({"t": "\ud800"}) == '{"t": "\\ud800"}'
