"""The input boundary of sharing, comments and user search, walked like tests/test_input_boundary:
any text or integer a client controls is stored exactly or refused with a documented status,
never a 500, identically on SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from hypothesis import given
from pydantic import ValidationError

from models import MAX_ID
from sharing_models import CommentCreate, ShareCreate, UserSearch
from tests.conftest import assert_error, make_task, make_user
from tests.test_input_boundary import EDGE_TEXT, EXAMPLES, HUGE, quiet_client

__all__ = ["quiet_client"]  # a fixture, used by name


def _valid(model: type[CommentCreate | ShareCreate], body: dict[str, str]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


@EXAMPLES
@given(content=EDGE_TEXT, username=EDGE_TEXT)
async def test_any_comment_or_share_text_is_stored_or_refused_never_a_500(
    quiet_client: httpx.AsyncClient, content: str, username: str
) -> None:
    client = quiet_client
    owner = await make_user(client)
    task = await make_task(client, owner)
    path = f"/tasks/{task['id']}"
    made = await client.post(f"{path}/comments", json={"content": content}, headers=owner.headers)
    if _valid(CommentCreate, {"content": content}):
        assert made.status_code == 201, made.text
        listed = await client.get(f"{path}/comments", headers=owner.headers)
        assert listed.json()[0]["content"] == content
    else:
        assert_error(made, 422)
    body = {"shared_with_username": username, "permission": "view"}
    shared = await client.post(f"{path}/share", json=body, headers=owner.headers)
    if _valid(ShareCreate, body):
        assert shared.status_code in (201, 404), shared.text  # 404: no such user
    else:
        assert_error(shared, 422)
    url = f"{path}/share/{quote(username, safe='')}"
    if username not in ("", ".", ".."):  # dot segments and nothing: other paths
        removed = await client.delete(url, headers=owner.headers)
        assert removed.status_code in (404, 422), removed.text


@EXAMPLES
@given(query=EDGE_TEXT, limit=HUGE)
async def test_any_user_search_is_answered_or_refused_never_a_500(
    quiet_client: httpx.AsyncClient, query: str, limit: int
) -> None:
    caller = await make_user(quiet_client)
    params: dict[str, str | int] = {"query": query, "limit": limit}
    response = await quiet_client.get("/users/search", params=params, headers=caller.headers)
    try:
        UserSearch.model_validate(params)
    except ValidationError:
        assert_error(response, 422)
        return
    assert response.status_code == 200, (params, response.text)
    assert all(user["username"].lower().startswith(query.lower()) for user in response.json())


@EXAMPLES
@given(comment_id=HUGE, skip=HUGE, limit=HUGE)
async def test_any_comment_integer_is_bounded_never_a_500(
    quiet_client: httpx.AsyncClient, comment_id: int, skip: int, limit: int
) -> None:
    client = quiet_client
    owner = await make_user(client)
    task = await make_task(client, owner)
    edited = await client.patch(
        f"/comments/{comment_id}", json={"content": "x"}, headers=owner.headers
    )
    in_range = 0 < comment_id <= MAX_ID
    assert edited.status_code in ({403, 404} if in_range else {422}), edited.text
    page = await client.get(
        f"/tasks/{task['id']}/comments", params={"skip": skip, "limit": limit},
        headers=owner.headers,
    )  # fmt: skip
    valid_page = 0 <= skip <= MAX_ID and 1 <= limit <= 100
    assert page.status_code == (200 if valid_page else 422), page.text
