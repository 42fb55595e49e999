"""The Grafana dashboard: valid JSON with the panels operators need, every query parsed by a real
PromQL parser and using only the metrics the operator exports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.alerts import contract
from tests.chart.helm import CHART_DIR

DASHBOARD = CHART_DIR / "files" / "dashboard.json"
# What Grafana substitutes before it sends a query to Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*"}


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _dashboard()["panels"]
        for target in panel["targets"]
    ]


def _as_sent(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_the_dashboard_has_a_panel_for_each_question_an_operator_asks() -> None:
    used = {name for _, expr in _queries() for name, _ in contract.selectors(_as_sent(expr))}
    # Time to expiry, readiness, renewals, requests, latency, rate limits, objects, failures,
    # Kubernetes writes and sets: every metric of the operator's is on the dashboard.
    assert used == set(contract.METRICS) - {
        "doks_access_credential_renewal_timestamp_seconds",
        "doks_access_digitalocean_request_duration_seconds_sum",
        "doks_access_digitalocean_request_duration_seconds_count",
    }
    titles = [panel["title"] for panel in _dashboard()["panels"]]
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize(("title", "expr"), _queries(), ids=[t for t, _ in _queries()])
def test_every_query_parses_and_uses_only_the_operators_metrics(title: str, expr: str) -> None:
    assert list(contract.selectors(_as_sent(expr))), title
    assert contract.unknown_references(_as_sent(expr)) == [], title


def test_every_panel_asks_the_chosen_data_source_and_has_a_place_and_an_id() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["description"].endswith("."), panel["title"]
    assert dashboard["uid"] == "doks-access-operator"  # links to it survive re-imports


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
