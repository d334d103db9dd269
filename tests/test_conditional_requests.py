"""ETag, If-None-Match and If-Match on tasks: no lost updates, cheap revalidation."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from tests.conftest import assert_error, make_task, make_user


async def test_get_returns_etag_and_if_none_match_gives_304(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    first = await client.get(f"/tasks/{task['id']}", headers=user.headers)
    etag = first.headers["etag"]
    cached = await client.get(
        f"/tasks/{task['id']}", headers={**user.headers, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    weak = await client.get(
        f"/tasks/{task['id']}", headers={**user.headers, "If-None-Match": f"W/{etag}"}
    )
    assert weak.status_code == 304
    stale = await client.get(
        f"/tasks/{task['id']}", headers={**user.headers, "If-None-Match": '"999"'}
    )
    assert stale.status_code == 200
    assert stale.json() == first.json()


async def test_every_write_changes_the_etag(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    created = await client.post("/tasks", json={"title": "t"}, headers=user.headers)
    path = f"/tasks/{created.json()['id']}"
    seen = {created.headers["etag"]}
    for write in (
        client.patch(path, json={"title": "u"}, headers=user.headers),
        client.post(f"{path}/tags", json=["a"], headers=user.headers),
        client.delete(f"{path}/tags/a", headers=user.headers),
    ):
        response = await write
        assert response.status_code == 200
        assert response.headers["etag"] not in seen
        seen.add(response.headers["etag"])


async def test_patch_with_stale_if_match_is_412_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    created = await client.post("/tasks", json={"title": "v1"}, headers=user.headers)
    path, old_etag = f"/tasks/{created.json()['id']}", created.headers["etag"]
    await client.patch(path, json={"title": "v2"}, headers=user.headers)
    for stale in (old_etag, f"W/{old_etag}", '"123456"'):
        response = await client.patch(
            path, json={"title": "lost update"}, headers={**user.headers, "If-Match": stale}
        )
        assert_error(response, 412, task_id=created.json()["id"])
    # Not an entity tag at all: refused as the schema's pattern says (a 422 naming the header).
    for malformed in ("garbage", "3", '"1" "2"'):
        response = await client.patch(
            path, json={"title": "lost update"}, headers={**user.headers, "If-Match": malformed}
        )
        assert assert_error(response, 422)["detail"][0]["loc"] == ["header", "If-Match"]
    assert (await client.get(path, headers=user.headers)).json()["title"] == "v2"


async def test_patch_with_current_or_any_if_match_succeeds(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    created = await client.post("/tasks", json={"title": "v1"}, headers=user.headers)
    path = f"/tasks/{created.json()['id']}"
    current = created.headers["etag"]
    first = await client.patch(
        path, json={"title": "v2"}, headers={**user.headers, "If-Match": f'"0", {current}'}
    )
    assert first.status_code == 200
    second = await client.patch(
        path, json={"title": "v3"}, headers={**user.headers, "If-Match": "*"}
    )
    assert second.status_code == 200
    assert second.json()["title"] == "v3"


async def test_delete_and_tags_honour_if_match(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    created = await client.post("/tasks", json={"title": "t"}, headers=user.headers)
    path, old_etag = f"/tasks/{created.json()['id']}", created.headers["etag"]
    fresh = await client.patch(path, json={"title": "u"}, headers=user.headers)
    stale = {**user.headers, "If-Match": old_etag}
    assert_error(await client.post(f"{path}/tags", json=["x"], headers=stale), 412)
    assert_error(await client.delete(path, headers=stale), 412)
    assert (await client.get(path, headers=user.headers)).status_code == 200
    current = {**user.headers, "If-Match": fresh.headers["etag"]}
    assert (await client.delete(path, headers=current)).status_code == 204
    assert (await client.get(path, headers=user.headers)).status_code == 404


async def test_concurrent_patches_with_same_if_match_one_wins(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for round_ in range(5):
        created = await client.post("/tasks", json={"title": "t"}, headers=user.headers)
        path = f"/tasks/{created.json()['id']}"
        guarded = {**user.headers, "If-Match": created.headers["etag"]}
        responses = await asyncio.gather(
            client.patch(path, json={"title": f"a{round_}"}, headers=guarded),
            client.patch(path, json={"title": f"b{round_}"}, headers=guarded),
        )
        assert sorted(r.status_code for r in responses) == [200, 412]
        winner = next(r for r in responses if r.status_code == 200)
        final = await client.get(path, headers=user.headers)
        assert final.json()["title"] == winner.json()["title"]


async def test_concurrent_patches_of_different_fields_both_persist(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    for _ in range(5):
        task = await make_task(client, user)
        path = f"/tasks/{task['id']}"
        responses = await asyncio.gather(
            client.patch(path, json={"title": "new title"}, headers=user.headers),
            client.patch(path, json={"priority": "high"}, headers=user.headers),
            client.patch(path, json={"description": "new description"}, headers=user.headers),
        )
        assert [r.status_code for r in responses] == [200, 200, 200]
        final = (await client.get(path, headers=user.headers)).json()
        assert final["title"] == "new title"
        assert final["priority"] == "high"
        assert final["description"] == "new description"


async def test_many_concurrent_patches_of_one_task_all_succeed(client: httpx.AsyncClient) -> None:
    # Writers of one task take turns on its row lock: a pile-up never runs out of retries (409).
    user = await make_user(client)
    task = await make_task(client, user)
    path = f"/tasks/{task['id']}"
    responses = await asyncio.gather(
        *(
            client.patch(path, json={"description": f"writer {n}"}, headers=user.headers)
            for n in range(16)
        )
    )
    assert [r.status_code for r in responses] == [200] * 16
    final = (await client.get(path, headers=user.headers)).json()
    assert final["description"] in {f"writer {n}" for n in range(16)}


async def test_answers_to_racing_writes_always_match_their_etag(client: httpx.AsyncClient) -> None:
    # PATCHes of the title race with tag additions on one task. Every answer must be the task
    # at the version its ETag names: the same version never shows two bodies, and (tags are only
    # added) a later version never lacks a tag an earlier one had, e.g. a PATCH that waited for
    # the row lock must not answer with the tags from before the write it waited for.
    user = await make_user(client)
    task = await make_task(client, user)
    path = f"/tasks/{task['id']}"
    writes = []
    for n in range(10):
        writes.append(client.patch(path, json={"title": f"t{n}"}, headers=user.headers))
        writes.append(client.post(f"{path}/tags", json=[f"tag{n}"], headers=user.headers))
    responses = await asyncio.gather(*writes)
    assert [r.status_code for r in responses] == [200] * 20
    seen: dict[int, dict[str, Any]] = {}
    for response in responses:
        body = response.json()
        version = int(response.headers["etag"].strip('"'))
        assert seen.setdefault(version, body) == body, version
    ordered = [seen[version] for version in sorted(seen)]
    for earlier, later in itertools.pairwise(ordered):
        assert set(earlier["tags"]) <= set(later["tags"]), (earlier, later)
    final = await client.get(path, headers=user.headers)
    assert final.headers["etag"] == f'"{max(seen)}"'
    assert final.json() == seen[max(seen)]
    assert sorted(final.json()["tags"]) == sorted(f"tag{n}" for n in range(10))


async def test_bulk_tag_replacement_racing_tag_additions(client: httpx.AsyncClient) -> None:
    # A bulk update that waited for the rows' locks must work from the tags committed before
    # it, not its snapshot's: else it re-inserts a tag that was just added (duplicate key).
    user = await make_user(client)
    task = await make_task(client, user)
    path = f"/tasks/{task['id']}"
    writes = []
    for n in range(8):
        writes.append(client.post(f"{path}/tags", json=[f"tag{n}"], headers=user.headers))
        bulk = {"task_ids": [task["id"]], "updates": {"tags": [f"tag{n}", "base"]}}
        writes.append(client.patch("/tasks/bulk", json=bulk, headers=user.headers))
    responses = await asyncio.gather(*writes)
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    final = (await client.get(path, headers=user.headers)).json()
    # The last bulk's list, then whatever was added after it, each tag once.
    assert final["tags"][1] == "base", final
    assert len(set(final["tags"])) == len(final["tags"])


async def test_racing_deletes_of_one_task_give_one_204_and_the_rest_404(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    for round_ in range(5):
        task = await make_task(client, user)
        path = f"/tasks/{task['id']}"
        deletes = [client.delete(path, headers=user.headers) for _ in range(3)]
        statuses = sorted(r.status_code for r in await asyncio.gather(*deletes))
        assert statuses == [204, 404, 404], (round_, statuses)
    stats = await client.get("/tasks/stats", headers=user.headers)
    assert stats.json()["total"] == 0
