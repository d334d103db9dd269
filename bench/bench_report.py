"""Scenarios, targets, and the JSON + Markdown report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    script: str
    plan: str
    floor: bool  # the floor serves it too
    ref: str  # the floor scenario its ratio is taken against
    connections: int | None = None  # None: the run's --connections
    extra: tuple[str, ...] = ()


SCENARIOS = [
    Scenario("health", "GET /health", "plan.lua", "health", True, "health"),
    Scenario("get", "GET /tasks/{id}", "plan.lua", "get", True, "get"),
    Scenario("list50", "GET /tasks?limit=50", "plan.lua", "list50", True, "list50"),
    Scenario("filtered", "filtered+searched+sorted list", "plan.lua", "filtered", False, "list50"),
    Scenario(
        "stats_hit",
        "GET /tasks/stats (hit)",
        "plan.lua",
        "stats",
        False,
        "get",
        extra=("count-cache",),
    ),
    Scenario("post", "POST /tasks", "post.lua", "tokens", False, "get"),
    Scenario(
        "patch_stats",
        "PATCH + GET /tasks/stats (miss)",
        "patch_stats.lua",
        "patch_stats",
        False,
        "get",
    ),
    Scenario("seq", "GET /tasks/{id}, 1 connection", "plan.lua", "get", True, "seq", 1),
]
READ_TARGETS = {"get", "list50", "filtered", "stats_hit"}
WRITE_TARGETS = {"post", "patch_stats"}
READ_RPS_RATIO = 0.35
READ_CPU_RATIO = 3.0
WRITE_RPS_RATIO = 0.25
SEQ_LATENCY_RATIO = 1.5
SCALE_LIMITS = {10_000: 3.0, 100_000: 10.0}
LIST_SCALE_LIMIT = {10_000: 1.5}  # the 50-task list, against the base size
IDLE_RSS_MB = 120.0
UPLOAD_PEAK_MB = 16.0


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each figure (the mean when there are two)."""

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 4) if values else 0.0

    return {
        "rounds": len(runs),
        "rps": med([r["rps"] for r in runs]),
        "p50_ms": med([r["latency_ms"]["p50"] for r in runs]),
        "p99_ms": med([r["latency_ms"]["p99"] for r in runs]),
        "cpu_ms_per_req": med([r["cpu_ms_per_req"] or 0.0 for r in runs]),
        "db_cpu_ms_per_req": med([r["db_cpu_ms_per_req"] or 0.0 for r in runs]),
        "errors": sum(r["errors"] + r["bad_statuses"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "counts": _sum_counts([r["counts"] for r in runs]),
    }


def _sum_counts(all_counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in all_counts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    api_runs, floor_runs = runs.get("api", {}), runs.get("floor", {})
    floor = {key: aggregate(value) for key, value in floor_runs.items() if value}
    summary: dict[str, Any] = {}
    for scenario in SCENARIOS:
        if not api_runs.get(scenario.key):
            continue
        api = aggregate(api_runs[scenario.key])
        ref = floor.get(scenario.ref)
        row: dict[str, Any] = {"title": scenario.title, "ref": scenario.ref, "api": api}
        row["floor"] = floor.get(scenario.key)
        if ref:
            row["rps_ratio"] = _ratio(api["rps"], ref["rps"])
            row["cpu_ratio"] = _ratio(api["cpu_ms_per_req"], ref["cpu_ms_per_req"])
            row["p50_ratio"] = _ratio(api["p50_ms"], ref["p50_ms"])
        summary[scenario.key] = row
    return summary


Row = tuple[str, str, bool | None]


def targets(results: dict[str, Any]) -> list[Row]:
    """(target, measured, met?) rows; None where it could not be measured."""
    summary = results.get("summary", {})
    return [
        *_read_targets(summary),
        *_write_targets(summary),
        *_seq_target(summary),
        *_scale_targets(results.get("scale", {})),
        *_memory_targets(results.get("rss", {}), results.get("upload", {})),
        *_workers_target(results.get("workers", {})),
    ]


def _read_targets(summary: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for key in ("get", "list50", "filtered", "stats_hit"):
        row = summary.get(key)
        if row and row.get("rps_ratio") is not None:
            rps, cpu = row["rps_ratio"], row["cpu_ratio"] or 0.0
            rows.append(
                (
                    f"{row['title']}: ≥ {READ_RPS_RATIO} x floor `{row['ref']}` req/s, "
                    f"CPU/req ≤ {READ_CPU_RATIO} x floor",
                    f"{rps:.3f} x, CPU {cpu:.2f} x",
                    rps >= READ_RPS_RATIO and cpu <= READ_CPU_RATIO,
                )
            )
    return rows


def _write_targets(summary: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for key in ("post", "patch_stats"):
        row = summary.get(key)
        if row and row.get("rps_ratio") is not None:
            rows.append(
                (
                    f"{row['title']}: ≥ {WRITE_RPS_RATIO} x floor `get` req/s",
                    f"{row['rps_ratio']:.3f} x",
                    row["rps_ratio"] >= WRITE_RPS_RATIO,
                )
            )
    return rows


def _seq_target(summary: dict[str, Any]) -> list[Row]:
    seq = summary.get("seq")
    if not seq or seq.get("p50_ratio") is None:
        return []
    return [
        (
            f"1-connection GET /tasks/{{id}} p50 ≤ {SEQ_LATENCY_RATIO} x floor",
            f"{seq['p50_ratio']:.2f} x ({seq['api']['p50_ms']:.2f} ms vs "
            f"{seq['floor']['p50_ms']:.2f} ms; p99 {seq['api']['p99_ms']:.2f} ms)",
            seq["p50_ratio"] <= SEQ_LATENCY_RATIO,
        )
    ]


def _scale_targets(scale: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for size, limit in SCALE_LIMITS.items():
        entry = scale.get("sizes", {}).get(str(size))
        if entry:
            for what in ("stats_miss", "filtered"):
                ratio = entry["ratio"][what]
                rows.append(
                    (f"{what} at {size:,} tasks ≤ {limit:g} x at {scale['base']}", f"{ratio:.2f} x",
                     ratio <= limit)
                )  # fmt: skip
    for size, limit in LIST_SCALE_LIMIT.items():
        entry = scale.get("sizes", {}).get(str(size))
        if entry:
            ratio = entry["ratio"]["list50"]
            rows.append(
                (
                    f"50-task list at {size:,} tasks ≤ {limit:g} x at {scale['base']}",
                    f"{ratio:.2f} x",
                    ratio <= limit,
                )
            )
    return rows


def _memory_targets(rss: dict[str, Any], upload: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if rss.get("api_idle"):
        worst = max(rss["api_idle"])
        rows.append((f"idle RSS per worker ≤ {IDLE_RSS_MB:g} MB", f"{worst:.1f} MB", worst <= 120))
    if upload.get("peak_delta_mb") is not None:
        delta = upload["peak_delta_mb"]
        rows.append(
            (f"10 MB upload raises peak RSS ≤ {UPLOAD_PEAK_MB:g} MB", f"{delta:.1f} MB",
             delta <= UPLOAD_PEAK_MB)
        )  # fmt: skip
    elif upload.get("note"):
        rows.append((f"10 MB upload raises peak RSS ≤ {UPLOAD_PEAK_MB:g} MB", upload["note"], None))
    return rows


def _workers_target(workers: dict[str, Any]) -> list[Row]:
    if workers.get("ratio") is None:
        return []
    return [
        (
            f"{workers['n']} workers serve more than 1 (GET /tasks/{{id}})",
            f"{workers['ratio']:.2f} x",
            workers["ratio"] > 1.0,
        )
    ]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"## Benchmark {meta['started']} ({meta['git']})",
        "",
        f"Machine: {meta['machine']}",
        f"Command: `{meta['command']}`",
        f"Settings: {meta['settings']}",
        "",
        "| scenario | server | req/s | p50 ms | p99 ms | CPU ms/req | DB CPU ms/req | errors "
        "| ratio req/s (vs floor) | ratio CPU/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["summary"].values():
        for who in ("api", "floor"):
            fig = row.get(who)
            if not fig:
                continue
            ratio = ""
            cpu_ratio = ""
            if who == "api" and row.get("rps_ratio") is not None:
                ratio = f"**{row['rps_ratio']:.3f}** (`{row['ref']}`)"
                cpu_ratio = _fmt(row.get("cpu_ratio"))
            cache = ""
            hits, misses = fig["counts"].get("cache_hit", 0), fig["counts"].get("cache_miss", 0)
            if hits or misses:
                cache = f" ({hits} hit / {misses} miss)"
            out.append(
                f"| {row['title']}{cache if who == 'api' else ''} | {who} | {_fmt(fig['rps'], 0)} "
                f"| {_fmt(fig['p50_ms'])} | {_fmt(fig['p99_ms'])} "
                f"| {_fmt(fig['cpu_ms_per_req'], 3)} | {_fmt(fig['db_cpu_ms_per_req'], 3)} "
                f"| {fig['errors']} | {ratio} | {cpu_ratio} |"
            )
    out += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in targets(results):
        mark = "n/a" if met is None else ("yes" if met else "**NO**")
        out.append(f"| {name} | {measured} | {mark} |")
    out += _scale_md(results.get("scale", {}))
    out += _memory_md(results)
    out += _feed_md(results.get("feed", {}))
    out += _deliveries_md(results.get("deliveries", {}))
    return "\n".join(out) + "\n"


def _feed_md(feed: dict[str, Any]) -> list[str]:
    if not feed.get("runs"):
        return []
    best = min(feed["runs"], key=lambda run: run["seconds"])
    return [
        "",
        "### Change feed",
        "",
        f"- {feed['events']:,} events, pages of {feed['page']}: best of {len(feed['runs'])} "
        f"{best['seconds']:.2f} s, **{feed['events_per_s']:,} events/s** "
        f"(page p50 {best['page_p50_ms']:.1f} ms)",
    ]


def _deliveries_md(deliveries: dict[str, Any]) -> list[str]:
    if not deliveries.get("runs"):
        return []
    out = [
        "",
        f"### Webhook deliveries ({deliveries['count']:,} per run, JOB_CONCURRENCY="
        f"{deliveries['job_concurrency']} per worker, local receiver)",
        "",
        "| workers | deliveries | seconds | deliveries/s | worker CPU ms/delivery "
        "| DB CPU ms/delivery | receiver CPU ms/delivery | first POST after s | worker start-up s "
        "| statuses |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in deliveries["runs"]:
        statuses = ", ".join(f"{key} {value}" for key, value in sorted(run["statuses"].items()))
        out.append(
            f"| {run['workers']} | {run['deliveries']:,} | {run['seconds']:.2f} "
            f"| **{run['deliveries_per_s']:,.1f}** | {run['worker_cpu_ms_per_delivery']:.3f} "
            f"| {run['db_cpu_ms_per_delivery']:.3f} | {run['receiver_cpu_ms_per_delivery']:.3f} "
            f"| {_fmt(run['first_post_after_s'])} | {run['startup_s']:.2f} | {statuses} |"
        )
    return out


def _scale_md(scale: dict[str, Any]) -> list[str]:
    if not scale.get("sizes"):
        return []
    out = [
        "",
        f"### Scaling (one user, sequential requests, median of {scale['iterations']} each, ms)",
        "",
        "| tasks | stats (miss) | filtered list | 50-task list | stats ratio | filtered ratio "
        "| list ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, entry in scale["sizes"].items():
        ms, ratio = entry["median_ms"], entry["ratio"]
        out.append(
            f"| {int(size):,} | {ms['stats_miss']:.2f} | {ms['filtered']:.2f} | {ms['list50']:.2f} "
            f"| {ratio['stats_miss']:.2f} x | {ratio['filtered']:.2f} x | {ratio['list50']:.2f} x |"
        )
    return out


def _memory_md(results: dict[str, Any]) -> list[str]:
    out = ["", "### Memory and workers", ""]
    rss = results.get("rss", {})
    for key, label in (
        ("api_idle", "API idle RSS per worker (MB)"),
        ("floor_idle", "floor idle RSS per worker (MB)"),
        ("api_peak", "API peak RSS per worker after the run (MB, VmHWM)"),
        ("api1_idle", "API, 1 worker, idle RSS (MB)"),
    ):
        if rss.get(key):
            out.append(f"- {label}: {', '.join(f'{v:.1f}' for v in rss[key])}")
    upload = results.get("upload", {})
    if upload:
        out.append(f"- 10 MB upload: {upload.get('note') or upload}")
    workers = results.get("workers", {})
    if workers.get("ratio") is not None:
        out.append(
            f"- GET /tasks/{{id}}: {workers['n']} workers {workers['rps_n']:.0f} req/s vs 1 worker "
            f"{workers['rps_1']:.0f} req/s: **{workers['ratio']:.2f} x**"
        )
    return out
