"""The chart's alerting rules: a real PromQL parser accepts every expression, they use only the
metrics the operator exports, ``promtool check rules`` accepts the rules file, and ``promtool test
rules`` feeds each alert series that must make it fire and series that must not."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.alerts import contract
from tests.alerts.conftest import NAMESPACE, RELEASE, render_rules
from tests.chart.helm import REPO_ROOT, Helm

ALERTS = {
    "DOKSAccessCredentialExpiringWhileRenewalsFail": ("warning", "10m"),
    "DOKSAccessCredentialExpired": ("critical", None),
    "DOKSAccessSetStalled": ("warning", "15m"),
    "DOKSAccessSetNotReady": ("warning", "30m"),
    "DOKSAccessCredentialRejected": ("warning", None),
    "DOKSAccessDigitalOceanErrors": ("warning", "15m"),
    "DOKSAccessOperatorDown": ("critical", "5m"),
}
JOB = f"{RELEASE}-metrics"
# promtool builds the whole of Prometheus on first use (see tools/promtool/build.sh).
PROMTOOL_TIMEOUT = pytest.mark.timeout(1500)


def _alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}


# --- parsed by a real PromQL parser ---------------------------------------------------------


def test_the_chart_renders_every_alert_with_its_severity_and_delay(
    rules: dict[str, Any],
) -> None:
    alerts = _alerts(rules)
    assert {name: (a["labels"]["severity"], a.get("for")) for name, a in alerts.items()} == ALERTS


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_expression_parses_and_uses_only_the_operators_metrics(
    rules: dict[str, Any], alert: str
) -> None:
    expr = _alerts(rules)[alert]["expr"]
    assert list(contract.selectors(expr)), expr  # it parses, and selects something
    assert contract.unknown_references(expr) == []


def test_an_invalid_expression_is_refused_by_the_parser() -> None:
    # The parser is real: the tests above would catch a broken rule.
    with pytest.raises(ValueError, match="parenthesis"):
        list(contract.selectors("max by (namespace) (doks_access_ready"))
    assert contract.unknown_references("doks_access_ready{reason='x'}") == [
        "doks_access_ready has no label(s) ['reason']"
    ]
    assert contract.unknown_references("doks_access_expiry") == [
        "unknown metric doks_access_expiry"
    ]


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_says_what_happened_and_what_to_do(rules: dict[str, Any], alert: str) -> None:
    annotations = _alerts(rules)[alert]["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["summary"].endswith(".")
    # The description names a next step: a command to run or a thing to check.
    assert re.search(r"kubectl|[Cc]heck", annotations["description"]), annotations["description"]


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown document's headings (lower case, punctuation dropped,
    spaces as dashes); code blocks have none."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    }


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_links_its_section_of_the_runbooks(rules: dict[str, Any], alert: str) -> None:
    url = _alerts(rules)[alert]["annotations"]["runbook_url"]
    base, anchor = url.split("#")
    assert base == "https://github.com/doks-access/doks-access-operator/blob/main/docs/runbooks.md"
    assert anchor == alert.lower()
    runbooks = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    assert anchor in _github_anchors(runbooks), f"docs/runbooks.md has no section #{anchor}"
    section = runbooks.split(f"\n## {alert}\n", 1)[1].split("\n## ", 1)[0]
    for part in ("**What it means.**", "**How to check.**", "**How to fix.**"):
        assert part in section, f"the runbook of {alert} lacks {part}"


def test_the_runbooks_can_live_elsewhere(helm: Helm) -> None:
    rules = render_rules(helm, {"runbookBaseURL": "https://wiki.example/runbooks/doks/"})
    for alert in ALERTS:
        assert _alerts(rules)[alert]["annotations"]["runbook_url"] == (
            f"https://wiki.example/runbooks/doks#{alert.lower()}"
        )


def test_the_runbooks_document_no_alert_the_chart_lacks() -> None:
    runbooks = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    assert set(re.findall(r"^## (DOKSAccess\w+)$", runbooks, flags=re.M)) == set(ALERTS)


def test_thresholds_and_the_operators_job_come_from_the_values(helm: Helm) -> None:
    alerts = _alerts(
        render_rules(
            helm,
            {
                "expiringWithinSeconds": 3600,
                "digitalOceanErrorRatio": 0.5,
                "upSelector": 'job="doks-access"',
                "alertLabels": {"team": "platform"},
            },
        )
    )
    assert "- time() < 3600\n" in alerts["DOKSAccessCredentialExpiringWhileRenewalsFail"]["expr"]
    assert alerts["DOKSAccessDigitalOceanErrors"]["expr"].endswith("> 0.5")
    assert alerts["DOKSAccessOperatorDown"]["expr"] == (
        'max by (job, namespace) (up{job="doks-access"}) == 0\n  or absent(up{job="doks-access"})'
    )
    for name, alert in alerts.items():
        assert contract.unknown_references(alert["expr"]) == [], name
        assert alert["labels"] == {"severity": ALERTS[name][0], "team": "platform"}


def test_by_default_operator_down_looks_for_the_service_monitors_job(
    rules: dict[str, Any],
) -> None:
    expr = _alerts(rules)["DOKSAccessOperatorDown"]["expr"]
    selector = f'up{{job="{JOB}", namespace="{NAMESPACE}"}}'
    assert expr == f"max by (job, namespace) ({selector}) == 0\n  or absent({selector})"


# --- promtool check rules and promtool test rules -------------------------------------------


def _promtool(promtool: Path, *args: str, cwd: Path) -> str:
    completed = subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, (
        f"promtool {' '.join(args)}:\n{completed.stdout}{completed.stderr}"
    )
    return completed.stdout


@PROMTOOL_TIMEOUT
def test_promtool_accepts_the_rules_as_a_plain_rules_file(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    output = _promtool(promtool, "check", "rules", "--lint=all", "rules.yaml", cwd=tmp_path)
    assert f"SUCCESS: {len(ALERTS)} rules found" in output


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{matchers}}}", "values": values}


def _expand(text: str, labels: dict[str, str], value: str = "") -> str:
    """A rule's annotation as Prometheus renders it: labels substituted, ``$value`` as given."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
    return re.sub(r"\{\{ \$value \| \w+ \}\}", value, text)


def _expected(
    rules: dict[str, Any], alert: str, labels: dict[str, str], value: str = ""
) -> dict[str, Any]:
    rule = _alerts(rules)[alert]
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {k: _expand(v, labels, value) for k, v in rule["annotations"].items()},
    }


def _promtool_test(
    promtool: Path, rules: dict[str, Any], tests: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    output = _promtool(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert "SUCCESS" in output


EXPIRATION = "doks_access_credential_expiration_timestamp_seconds"
FAILURES = "doks_access_consecutive_failures"
TARGET = {"job": JOB, "instance": "10.0.0.7:9090"}


def _object(namespace: str, name: str) -> dict[str, str]:
    return {"namespace": namespace, "name": name, "cluster_id": f"{namespace}-{name}-id"}


def _expiring_while_failing_input() -> list[dict[str, str]]:
    # At 0s, 100000 seconds (27h46m40s) are left: within the default 2 days.
    return [
        # Must fire: expires soon, renewals fail from minute 2 on.
        _series(EXPIRATION, "100000x30", **_object("team-a", "prod"), **TARGET),
        _series(FAILURES, "0 0 1+1x28", **_object("team-a", "prod"), **TARGET),
        # Expires soon, but its renewals succeed (it is not due yet).
        _series(EXPIRATION, "100000x30", **_object("team-a", "staging"), **TARGET),
        _series(FAILURES, "0x30", **_object("team-a", "staging"), **TARGET),
        # Renewals fail, but the credential has months left.
        _series(EXPIRATION, "10000000x30", **_object("team-b", "prod"), **TARGET),
        _series(FAILURES, "0 0 1+1x28", **_object("team-b", "prod"), **TARGET),
        # Expires soon; two renewals failed, the third succeeded: shorter than 10 minutes.
        _series(EXPIRATION, "100000x30", **_object("team-b", "staging"), **TARGET),
        _series(FAILURES, "0 0 1 2 0x26", **_object("team-b", "staging"), **TARGET),
        # No credential yet (expiration 0) and failing: the Ready condition tells, not this alert.
        _series(EXPIRATION, "0x30", **_object("team-c", "new"), **TARGET),
        _series(FAILURES, "0 0 1+1x28", **_object("team-c", "new"), **TARGET),
    ]


@PROMTOOL_TIMEOUT
def test_expiring_while_renewals_fail_fires_only_after_ten_minutes_of_failures_near_expiry(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessCredentialExpiringWhileRenewalsFail"
    # At 15m: 100000 - 900 seconds left.
    firing = _expected(rules, alert, _object("team-a", "prod"), "1d 3h 31m 40s")
    test = {
        "interval": "1m",
        "input_series": _expiring_while_failing_input(),
        "alert_rule_test": [
            {"eval_time": "11m", "alertname": alert, "exp_alerts": []},  # failing for 9 minutes
            {"eval_time": "15m", "alertname": alert, "exp_alerts": [firing]},
            {"eval_time": "15m", "alertname": "DOKSAccessCredentialExpired", "exp_alerts": []},
        ],
    }
    _promtool_test(promtool, rules, [test], tmp_path)


@PROMTOOL_TIMEOUT
def test_a_shorter_expiry_threshold_from_the_values_is_what_the_alert_uses(
    promtool: Path, helm: Helm, tmp_path: Path
) -> None:
    rules = render_rules(helm, {"expiringWithinSeconds": 86400})  # 100000 s left is not within
    alert = "DOKSAccessCredentialExpiringWhileRenewalsFail"
    test = {
        "interval": "1m",
        "input_series": _expiring_while_failing_input(),
        "alert_rule_test": [{"eval_time": "25m", "alertname": alert, "exp_alerts": []}],
    }
    _promtool_test(promtool, rules, [test], tmp_path)


@PROMTOOL_TIMEOUT
def test_credential_expired_fires_once_the_expiration_time_has_passed(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessCredentialExpired"
    standby = {"job": JOB, "instance": "10.0.0.8:9090"}
    test = {
        "interval": "1m",
        "input_series": [
            # Must fire: expires at 10m, never renewed.
            _series(EXPIRATION, "600x20", **_object("team-a", "prod"), **TARGET),
            # Two replicas report it; the newer credential (from the leader) counts.
            _series(EXPIRATION, "600x20", **_object("team-b", "prod"), **standby),
            _series(EXPIRATION, "10000000x20", **_object("team-b", "prod"), **TARGET),
            # No credential yet.
            _series(EXPIRATION, "0x20", **_object("team-c", "new"), **TARGET),
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": alert, "exp_alerts": []},
            {
                "eval_time": "11m",
                "alertname": alert,
                "exp_alerts": [_expected(rules, alert, _object("team-a", "prod"))],
            },
        ],
    }
    _promtool_test(promtool, rules, [test], tmp_path)


@PROMTOOL_TIMEOUT
def test_digitalocean_errors_fire_when_sustained_and_not_for_one_error_or_a_low_ratio(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessDigitalOceanErrors"
    requests = "doks_access_digitalocean_requests_total"
    test = {
        "interval": "1m",
        "input_series": [
            # Must fire: half of the kubeconfig requests get a 503, minute after minute.
            _series(requests, "0+1x60", endpoint="kubeconfig", code="200", **TARGET),
            _series(requests, "0+1x60", endpoint="kubeconfig", code="503", **TARGET),
            # One 429 among many successes.
            _series(requests, "0+1x60", endpoint="list_clusters", code="200", **TARGET),
            _series(requests, "0x10 1x50", endpoint="list_clusters", code="429", **TARGET),
            # Errors all the time, but 1 in 10: below the default 20%.
            _series(requests, "0+9x60", endpoint="get_cluster", code="200", **TARGET),
            _series(requests, "0+1x60", endpoint="get_cluster", code="500", **TARGET),
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": alert, "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": alert,
                "exp_alerts": [_expected(rules, alert, {"endpoint": "kubeconfig"}, "50%")],
            },
        ],
    }
    _promtool_test(promtool, rules, [test], tmp_path)


@PROMTOOL_TIMEOUT
def test_operator_down_fires_when_no_target_of_its_job_is_up_for_five_minutes(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessOperatorDown"
    ours = {"job": JOB, "namespace": NAMESPACE}
    firing = _expected(rules, alert, ours)
    other_job = _series("up", "1x30", job="something-else", namespace=NAMESPACE, instance="x")
    tests = [
        {  # The only replica goes down at 3m.
            "interval": "1m",
            "input_series": [_series("up", "1 1 1 0x27", **ours, instance="a"), other_job],
            "alert_rule_test": [
                {"eval_time": "7m", "alertname": alert, "exp_alerts": []},
                {"eval_time": "9m", "alertname": alert, "exp_alerts": [firing]},
            ],
        },
        {  # Of two replicas one goes down: the other still works.
            "interval": "1m",
            "input_series": [
                _series("up", "1 1 1 0x27", **ours, instance="a"),
                _series("up", "1x30", **ours, instance="b"),
            ],
            "alert_rule_test": [{"eval_time": "20m", "alertname": alert, "exp_alerts": []}],
        },
        {  # Prometheus never found the operator.
            "interval": "1m",
            "input_series": [other_job],
            "alert_rule_test": [{"eval_time": "6m", "alertname": alert, "exp_alerts": [firing]}],
        },
    ]
    _promtool_test(promtool, rules, tests, tmp_path)


SET_CLUSTERS = "doks_access_set_clusters"
SET_STALLED = "doks_access_set_stalled"


def _set(namespace: str, name: str) -> dict[str, str]:
    return {"namespace": namespace, "name": name}


def _set_counts(namespace: str, name: str, **values: str) -> list[dict[str, str]]:
    """A set's four series, as the operator exports them: every state, 0 when none."""
    return [
        _series(
            SET_CLUSTERS, values.get(state, "0x40"), **_set(namespace, name), state=state, **TARGET
        )
        for state in ("matched", "ready", "pending", "refused")
    ]


@PROMTOOL_TIMEOUT
def test_set_stalled_fires_after_fifteen_minutes_stalled_and_not_for_a_shorter_spell(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessSetStalled"
    test = {
        "interval": "1m",
        "input_series": [
            # Must fire: Stalled from minute 2 on (a token Secret deleted, say).
            _series(SET_STALLED, "0 0 1x38", **_set("team-a", "fleet"), **TARGET),
            # Stalled for 10 minutes, then fixed.
            _series(SET_STALLED, "0 1x10 0x29", **_set("team-a", "blip"), **TARGET),
            # Never stalled.
            _series(SET_STALLED, "0x40", **_set("team-b", "fleet"), **TARGET),
        ],
        "alert_rule_test": [
            {"eval_time": "16m", "alertname": alert, "exp_alerts": []},  # stalled for 14 minutes
            {
                "eval_time": "20m",
                "alertname": alert,
                "exp_alerts": [_expected(rules, alert, _set("team-a", "fleet"))],
            },
        ],
    }
    _promtool_test(promtool, rules, [test], tmp_path)


@PROMTOOL_TIMEOUT
def test_set_not_ready_counts_children_neither_ready_pending_nor_refused_for_thirty_minutes(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessSetNotReady"
    test = {
        "interval": "1m",
        "input_series": [
            # Must fire: of 5 clusters 2 are Ready and 1 is pending; 2 children are not Ready.
            *_set_counts("team-a", "fleet", matched="5x40", ready="2x40", pending="1x40"),
            # A fleet being issued: 10 children, Ready one a minute; done in 10 minutes.
            *_set_counts("team-a", "issuing", matched="10x40", ready="0+1x10 10x30"),
            # Clusters still being created in DigitalOcean: pending, no child yet.
            *_set_counts("team-b", "provisioning", matched="3x40", pending="3x40"),
            # Two clusters refused (colliding target names): DOKSAccessSetStalled says so.
            *_set_counts("team-b", "collision", matched="4x40", ready="2x40", refused="2x40"),
            # Every child Ready.
            *_set_counts("team-c", "healthy", matched="7x40", ready="7x40"),
        ],
        "alert_rule_test": [
            {"eval_time": "29m", "alertname": alert, "exp_alerts": []},
            {
                "eval_time": "31m",
                "alertname": alert,
                "exp_alerts": [_expected(rules, alert, _set("team-a", "fleet"), "2")],
            },
            {"eval_time": "31m", "alertname": "DOKSAccessSetStalled", "exp_alerts": []},
        ],
    }
    _promtool_test(promtool, rules, [test], tmp_path)


GUARD = "doks_access_guard_checks_total"


@PROMTOOL_TIMEOUT
def test_credential_rejected_fires_at_once_and_clears_an_hour_later(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    alert = "DOKSAccessCredentialRejected"
    labels = {"job": JOB, "namespace": NAMESPACE}
    test = {
        "interval": "1m",
        "input_series": [
            # One rejection at minute 10; accepted checks go on all along.
            _series(GUARD, "0x9 1x120", result="rejected", instance="a", **labels),
            _series(GUARD, "0+1x130", result="accepted", instance="a", **labels),
            # Another operator whose guard only ever accepts.
            _series(GUARD, "0x130", result="rejected", instance="b", job="other", namespace="x"),
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": alert, "exp_alerts": []},
            {
                "eval_time": "12m",
                "alertname": alert,
                "exp_alerts": [_expected(rules, alert, labels, "1")],
            },
            {"eval_time": "75m", "alertname": alert, "exp_alerts": []},
        ],
    }
    _promtool_test(promtool, rules, [test], tmp_path)
