"""The arithmetic behind the benchmark's figures: percentiles and API-server request counts."""

from __future__ import annotations

import pytest

from bench import figures, markdown


def sample(
    verb: str, resource: str, value: int, *, subresource: str = "", code: str = "200"
) -> str:
    labels = (
        f'code="{code}",component="apiserver",dry_run="",group="",resource="{resource}",'
        f'scope="resource",subresource="{subresource}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


APISERVER_METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        sample("POST", "secrets", 7, code="201"),
        sample("POST", "secrets", 1, code="409"),
        sample("PATCH", "doclusteraccesses", 5, subresource="status"),
        sample("GET", "secrets", 11),
        sample("WATCH", "secrets", 2),
        sample("PUT", "leases", 40),
        "# HELP apiserver_request_duration_seconds Response latency distribution",
        "# TYPE apiserver_request_duration_seconds histogram",
        'apiserver_request_duration_seconds_bucket{resource="secrets",verb="POST",le="0.1"} 8',
        "",
    ]
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]

    assert figures.percentile(values, 0) == 1.0
    assert figures.percentile(values, 50) == 2.5
    assert figures.percentile(values, 100) == 4.0
    assert figures.percentile([7.0], 95) == 7.0


def test_a_distribution_of_unsorted_values() -> None:
    spread = figures.Distribution.of([3.0, 1.0, 2.0, 10.0])

    assert (spread.count, spread.p50, spread.max, spread.mean) == (4, 2.5, 10.0, 4.0)
    assert spread.p95 == pytest.approx(8.95)


@pytest.mark.parametrize("values", [[], [1.0]])
def test_refuses_what_has_no_percentile(values: list[float]) -> None:
    with pytest.raises(ValueError, match=r"no values|not in"):
        figures.percentile(values, 50 if not values else 101)


def test_counts_requests_by_verb_and_resource_over_codes() -> None:
    counts = figures.apiserver_requests(APISERVER_METRICS)

    assert counts[("POST", "secrets", "")] == 8
    assert counts[("PATCH", "doclusteraccesses", "status")] == 5
    assert len(counts) == 5


def test_writes_and_calls_on_some_resources_between_two_scrapes() -> None:
    before = figures.apiserver_requests(APISERVER_METRICS)
    after = before.copy()
    after[("POST", "secrets", "")] += 3
    after[("GET", "secrets", "")] += 2
    after[("WATCH", "secrets", "")] += 1
    after[("PUT", "leases", "")] += 9

    change = figures.delta(before, after)

    assert figures.writes(change, resources=["secrets", "doclusteraccesses"]) == 3
    assert figures.calls(change, resources=["secrets"]) == 5  # watches are streams, not calls
    assert figures.by_verb(change, resources=["secrets"]) == {
        "GET secrets": 2,
        "POST secrets": 3,
        "WATCH secrets": 1,
    }


@pytest.mark.parametrize(
    ("count", "expected"), [(0, 0), (250, 0), (251, 60), (1000, 180), (1001, 240)]
)
def test_the_shortest_time_a_burst_fits_a_sliding_window(count: int, expected: float) -> None:
    assert figures.sliding_window_minimum(count, per_window=250, window=60) == expected


def _run(value: float, met: bool) -> dict[str, object]:
    figure = {"what": "all Ready after", "value": value, "unit": "s", "target": "≤ 20", "met": met}
    result = {"scenario": "burst", "title": "2. Burst", "figures": [figure], "notes": []}
    return {"results": [result]}


def test_the_markdown_tables_put_both_runs_side_by_side() -> None:
    table = markdown.tables(_run(17.94, True), _run(29.1, False))  # type: ignore[arg-type]

    assert "| figure | before | after | target |  |" in table
    assert "| all Ready after | 29.1 s | 17.9 s | ≤ 20 | met |" in table
