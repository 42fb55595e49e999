"""The arithmetic behind the benchmark's figures: percentiles, API-server request counts, the
memory census, and the tables the report renders from the JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import census, figures, markdown, report

RECORDED = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"


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


def test_a_figure_the_earlier_run_lacks_is_an_empty_cell() -> None:
    after = _run(11.0, True)
    new = {"what": "RSS growth per object", "value": 9.5, "unit": "KiB", "target": "≤ 10"}
    after["results"][0]["figures"].append({**new, "met": True})  # type: ignore[index]

    table = markdown.tables(after, _run(29.1, False))  # type: ignore[arg-type]

    assert "| RSS growth per object |  | 9.50 KiB | ≤ 10 | met |" in table


@pytest.mark.parametrize("recorded", sorted(RECORDED.glob("*.json")), ids=lambda p: p.name)
def test_the_recorded_runs_still_render_alone_and_as_the_earlier_run(recorded: Path) -> None:
    earlier = json.loads(recorded.read_text())
    alone, side_by_side = markdown.tables(earlier), markdown.tables(earlier, earlier)

    for result in earlier["results"]:  # a whole run, or the scenarios of one section
        assert f"**{result['title']}**" in alone
        for figure in result["figures"]:
            assert f"| {figure['what']} |" in side_by_side
    if any(result["scenario"] == "idle" for result in earlier["results"]):
        assert "| RSS at 10,000 |" in side_by_side


# -- per object -----------------------------------------------------------------------------------


def test_an_amount_per_object() -> None:
    assert figures.per_object(3 * 1024, objects=1024) == 3.0
    with pytest.raises(ValueError, match="no objects"):
        figures.per_object(1.0, objects=0)


def test_growth_per_object_between_the_first_and_the_last_point() -> None:
    points = [
        {"objects": 1000, "rss_mib": 120.0},
        {"objects": 5000, "rss_mib": 150.0},
        {"objects": 11000, "rss_mib": 170.0},
    ]

    assert figures.growth_per_object(points, "rss_mib") == pytest.approx(0.005)
    with pytest.raises(ValueError, match="two points"):
        figures.growth_per_object(points[:1], "rss_mib")


# -- the census -----------------------------------------------------------------------------------


def _census(rss: int, **types: tuple[int, int]) -> dict[str, Any]:
    entries = {name: {"count": count, "bytes": size} for name, (count, size) in types.items()}
    return {
        "rss_bytes": rss,
        "objects": sum(count for count, _ in types.values()),
        "bytes": sum(size for _, size in types.values()),
        "types": entries,
    }


def test_the_census_breakdown_is_the_growth_per_object_largest_first() -> None:
    small = _census(100_000_000, dict=(500, 50_000), list=(10, 1_000), gone=(7, 700))
    large = _census(
        100_000_000 + 1000 * 40_000,
        dict=(8_500, 2_050_000),
        list=(10, 1_000),
        Task=(1000, 300_000),
        deque=(3_000, 1_950_000),
    )

    breakdown = census.breakdown(small, large, objects=1000, top=2)

    assert breakdown["rows"] == [
        {"type": "dict", "bytes_per_object": 2000.0, "count_per_object": 8.0},
        {"type": "deque", "bytes_per_object": 1950.0, "count_per_object": 3.0},
    ]
    # Task (+300 B), list (0) and gone (-0.7 B) are the other types.
    assert breakdown["other_types_bytes_per_object"] == 299.3
    assert breakdown["census_bytes_per_object"] == 4249.3
    assert breakdown["rss_bytes_per_object"] == 40_000.0
    assert breakdown["not_in_census_bytes_per_object"] == 35_750.7


def test_a_breakdown_needs_two_sizes() -> None:
    with pytest.raises(ValueError, match="different sizes"):
        census.breakdown(_census(1), _census(2), objects=0)


class _Counted:
    pass


def test_a_census_counts_live_objects_by_qualified_type_name() -> None:
    alive = [_Counted() for _ in range(50)]

    taken = census.take()

    counted = taken["types"][f"{__name__}._Counted"]
    assert counted["count"] >= 50
    assert counted["bytes"] > 0
    assert taken["rss_bytes"] > 0
    assert taken["objects"] >= sum(t["count"] for t in taken["types"].values())
    assert "types" not in census.summary(taken)
    del alive


def test_a_census_file_is_named_by_process_and_request_and_written_whole(tmp_path: Path) -> None:
    path = census.path_for(tmp_path / "census-1", pid=42, request=3)
    census.write_atomically(path, '{"objects": 1}')

    assert path.name == "census-1-42-3.json"
    assert json.loads(path.read_text()) == {"objects": 1}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


# -- detail tables --------------------------------------------------------------------------------


def test_the_idle_scenario_shows_where_the_memory_per_object_goes() -> None:
    breakdown = census.breakdown(
        _census(0, dict=(0, 0)),
        _census(2000 * 6000, **{"dict": (2000, 2_000_000), "f.<locals>.Record": (2000, 112_000)}),
        objects=2000,
    )
    idle = {
        "scenario": "idle",
        "title": "3. Idle scale",
        "figures": [],
        "notes": [],
        "details": {"census": {"breakdown": {"objects_from": 0, "objects_to": 2000, **breakdown}}},
    }

    table = markdown.tables({"results": [idle]})

    assert "_Where the memory per object goes: growth from 0 to 2,000 objects" in table
    assert "| type | bytes per object | count per object |" in table
    assert "| dict | 1,000 B | 1.00 |" in table
    assert "| f.&lt;locals&gt;.Record | 56 B | 1.00 |" in table
    assert "| RSS not in the census (str, bytes, int, allocator, C) | 4,944 B |  |" in table


def test_the_workers_scenario_has_a_row_per_worker_count() -> None:
    run = {
        "workers": 8,
        "default": True,
        "all_ready_s": 9.5,
        "ready_p50_s": 5.0,
        "ready_p95_s": 9.0,
        "cpu_s": 12.0,
        "peak_rss_mib": 150.0,
        "digitalocean_calls_per_object": 1.0,
    }
    slow = {**run, "workers": 2, "default": False, "all_ready_s": None}
    result = {"scenario": "workers", "details": {"runs": [slow, run]}}

    (detail,) = report.detail_tables(result)

    assert detail.rows == [
        ["2", "n/a", "5.00 s", "9.00 s", "12 s", "150 MiB", "1.00"],
        ["8 (default)", "9.50 s", "5.00 s", "9.00 s", "12 s", "150 MiB", "1.00"],
    ]
    assert report.detail_tables({"scenario": "burst", "details": {}}) == []
