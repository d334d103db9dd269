"""GET /metrics: Prometheus text with per-route-template request metrics, pool and cache."""

from __future__ import annotations

import re

import httpx

from tests.conftest import make_task, make_user


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    task = await make_task(client, user)
    before = (await client.get("/metrics")).text
    for _ in range(3):
        await client.get(f"/tasks/{task['id']}", headers=user.headers)
    await client.get("/tasks/2147483647", headers=user.headers)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    labels = {"method": "GET", "route": "/tasks/{task_id}"}

    def delta(name: str, **extra: str) -> float:
        return _sample(after, name, **labels, **extra) - _sample(before, name, **labels, **extra)

    assert delta("http_requests_total", status="200") == 3
    assert delta("http_requests_total", status="404") == 1
    assert delta("http_request_duration_seconds_count", status="200") == 3
    assert f"/tasks/{task['id']}" not in after  # raw paths never become labels
    assert 'http_requests_in_flight{method="GET",route="/tasks/{task_id}"}' in after


async def test_metrics_report_pool_and_cache_results(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    before = (await client.get("/metrics")).text
    await client.get("/tasks/stats", headers=user.headers)
    await client.get("/tasks/stats", headers=user.headers)
    after = (await client.get("/metrics")).text
    for result in ("hit", "miss"):
        gained = _sample(after, "cache_requests_total", result=result) - _sample(
            before, "cache_requests_total", result=result
        )
        assert gained == 1, result
    assert "db_pool_checked_out" in after


async def test_metrics_endpoint_is_not_rate_limited(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert "x-ratelimit-limit" not in response.headers
