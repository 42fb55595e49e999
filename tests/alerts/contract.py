"""The operator's metrics as the alerts and the dashboard may use them: names and label names.

This is the contract with the operator's ``/metrics`` endpoint; a rule or a panel that names a
metric or a label missing here fails the tests instead of silently matching nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import promql_parser

OBJECT = frozenset({"namespace", "name", "cluster_id"})
SET = frozenset({"namespace", "name"})

# Metric name -> the labels the operator gives it.
METRICS: dict[str, frozenset[str]] = {
    "doks_access_credential_expiration_timestamp_seconds": OBJECT,
    "doks_access_credential_renewal_timestamp_seconds": OBJECT,
    "doks_access_ready": OBJECT | {"status"},
    "doks_access_consecutive_failures": OBJECT,
    "doks_access_renewals_total": frozenset({"result"}),
    "doks_access_guard_checks_total": frozenset({"result"}),
    "doks_access_digitalocean_requests_total": frozenset({"endpoint", "code"}),
    "doks_access_digitalocean_request_duration_seconds_bucket": frozenset({"endpoint", "le"}),
    "doks_access_digitalocean_request_duration_seconds_sum": frozenset({"endpoint"}),
    "doks_access_digitalocean_request_duration_seconds_count": frozenset({"endpoint"}),
    "doks_access_digitalocean_ratelimit_remaining": frozenset({"token"}),
    "doks_access_managed_objects": frozenset(),
    "doks_access_expired_objects": frozenset(),
    "doks_access_kubernetes_writes_total": frozenset({"kind"}),
    "doks_access_set_clusters": SET | {"state"},
    "doks_access_set_stalled": SET,
}
# Labels Prometheus adds to every scraped series (the scrape target's).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container"})
# Prometheus's own series about each scrape target.
SCRAPE_METRICS = frozenset({"up"})


def selectors(expr: str) -> Iterator[tuple[str, frozenset[str]]]:
    """Each metric an expression selects, with the label names its matchers use.

    Raises ``ValueError`` when the expression does not parse.
    """
    found: list[tuple[str, frozenset[str]]] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = frozenset(m.name for m in node.matchers.matchers)
            found.append((node.name, labels - {"__name__"}))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return iter(found)


def unknown_references(expr: str) -> list[str]:
    """What an expression names that the operator does not export, as readable complaints."""
    complaints = []
    for name, labels in selectors(expr):
        if name in SCRAPE_METRICS:
            continue
        if name not in METRICS:
            complaints.append(f"unknown metric {name}")
            continue
        extra = labels - METRICS[name] - TARGET_LABELS
        if extra:
            complaints.append(f"{name} has no label(s) {sorted(extra)}")
    return complaints
