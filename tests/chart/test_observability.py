"""The chart's monitoring: the metrics port and Service, the ServiceMonitor, the PrometheusRule and
the Grafana dashboard ConfigMap, as rendered. The ServiceMonitor and the PrometheusRule are checked
by shape only: their CRDs (the Prometheus Operator's) are not in the local control plane. The rules
themselves are tested in tests/alerts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.helm import CHART_DIR, Helm, HelmError, of_kind, one

FULLNAME = "doks-access-operator"
SERVICE = f"{FULLNAME}-metrics"
NAMESPACE = "doks-access-system"
SELECTOR = {
    "app.kubernetes.io/name": "doks-access-operator",
    "app.kubernetes.io/instance": "doks-access-operator",
}
SERVICE_MONITOR_ON = {"metrics": {"serviceMonitor": {"enabled": True}}}
METRICS_OFF = {"metrics": {"enabled": False}}


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _env_names(objects: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in _container(objects)["env"]]


# --- the metrics endpoint and its Service ---------------------------------------------------


def test_metrics_are_served_on_port_9090_behind_a_service_by_default(helm: Helm) -> None:
    rendered = helm.render()
    container = _container(rendered)
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DOKS_ACCESS_METRICS_ENDPOINT"] == "http://:9090/metrics"
    service = one(rendered, "Service")
    assert service["metadata"]["name"] == SERVICE
    assert service["metadata"]["namespace"] == NAMESPACE
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": SELECTOR,
        "ports": [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}],
    }


def test_metrics_off_removes_the_port_the_variable_and_the_service(helm: Helm) -> None:
    rendered = helm.render(values=METRICS_OFF)
    assert not of_kind(rendered, "Service")
    assert [p["name"] for p in _container(rendered)["ports"]] == ["healthz"]
    assert "DOKS_ACCESS_METRICS_ENDPOINT" not in _env_names(rendered)
    policy = one(
        helm.render(values={**METRICS_OFF, "networkPolicy": {"enabled": True}}), "NetworkPolicy"
    )
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]


def test_service_annotations_are_passed_on(helm: Helm) -> None:
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}
    service = one(
        helm.render(values={"metrics": {"service": {"annotations": annotations}}}), "Service"
    )
    assert service["metadata"]["annotations"] == annotations


def test_the_network_policy_can_limit_who_scrapes_the_metrics(helm: Helm) -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    values = {"networkPolicy": {"enabled": True, "metricsFrom": peers}}
    policy = one(helm.render(values=values), "NetworkPolicy")
    assert policy["spec"]["ingress"][1] == {
        "ports": [{"port": 9090, "protocol": "TCP"}],
        "from": peers,
    }


# --- the ServiceMonitor ---------------------------------------------------------------------


def test_there_is_no_service_monitor_prometheus_rule_or_dashboard_by_default(helm: Helm) -> None:
    kinds = {o["kind"] for o in helm.render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def test_the_service_monitor_scrapes_the_metrics_service(helm: Helm) -> None:
    values = {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "interval": "1m",
                "labels": {"release": "kube-prometheus-stack"},
            }
        }
    }
    rendered = helm.render(values=values)
    monitor = one(rendered, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(rendered, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": service["spec"]["ports"][0]["name"],
        "path": "/metrics",
        "interval": "1m",
        "scrapeTimeout": "10s",
        "honorLabels": True,
    }
    # The selector finds the Service only, not something else of the release.
    services = [o for o in rendered if o["kind"] == "Service"]
    assert len(services) == 1


def test_the_service_monitor_can_relabel_and_live_in_prometheus_namespace(helm: Helm) -> None:
    relabelings = [
        {"targetLabel": "cluster", "replacement": "prod-eu", "action": "replace"},
    ]
    metric_relabelings = [
        {"sourceLabels": ["__name__"], "regex": "doks_access_kubernetes_.*", "action": "drop"},
    ]
    values = {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "annotations": {"example.com/team": "platform"},
                "relabelings": relabelings,
                "metricRelabelings": metric_relabelings,
            }
        }
    }
    monitor = one(helm.render(values=values), "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["annotations"] == {"example.com/team": "platform"}
    # From Prometheus's namespace it still looks for the Service in the release namespace.
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["relabelings"] == relabelings
    assert endpoint["metricRelabelings"] == metric_relabelings


@pytest.mark.parametrize(
    "values",
    [
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        {**METRICS_OFF, "prometheusRule": {"enabled": True}},
    ],
    ids=["service monitor", "prometheus rule"],
)
def test_monitoring_without_metrics_is_refused(helm: Helm, values: dict[str, Any]) -> None:
    with pytest.raises(HelmError, match=r"needs metrics\.enabled"):
        helm.render(values=values)


# --- the PrometheusRule ---------------------------------------------------------------------


def test_the_prometheus_rule_holds_the_alert_group(helm: Helm) -> None:
    values = {
        **SERVICE_MONITOR_ON,
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    }
    rendered = helm.render(values=values)
    rule = one(rendered, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (group,) = rule["spec"]["groups"]
    assert group["name"] == "doks-access-operator"
    assert [r["alert"] for r in group["rules"]] == [
        "DOKSAccessCredentialExpiringWhileRenewalsFail",
        "DOKSAccessCredentialExpired",
        "DOKSAccessSetStalled",
        "DOKSAccessSetNotReady",
        "DOKSAccessCredentialRejected",
        "DOKSAccessDigitalOceanErrors",
        "DOKSAccessOperatorDown",
    ]
    # Prometheus names the ServiceMonitor's job after the Service: that is the job it watches.
    (down,) = [r for r in group["rules"] if r["alert"] == "DOKSAccessOperatorDown"]
    service = one(rendered, "Service")
    assert f'job="{service["metadata"]["name"]}"' in down["expr"]
    assert f'namespace="{NAMESPACE}"' in down["expr"]


def test_the_rule_names_a_shortened_service_for_long_release_names(helm: Helm) -> None:
    release = "a-release-name-long-enough-to-have-its-names-cut-x"  # 50 of 53 characters
    rendered = helm.render(values={"prometheusRule": {"enabled": True}}, release=release)
    service = one(rendered, "Service")["metadata"]["name"]
    assert len(service) <= 63
    assert service.endswith("-metrics")
    (group,) = one(rendered, "PrometheusRule")["spec"]["groups"]
    assert f'job="{service}"' in group["rules"][-1]["expr"]


# --- the Grafana dashboard ------------------------------------------------------------------


def test_the_dashboard_config_map_holds_the_dashboard_for_grafanas_sidecar(helm: Helm) -> None:
    config_map = one(helm.render(values={"grafanaDashboard": {"enabled": True}}), "ConfigMap")
    assert config_map["metadata"]["name"] == f"{FULLNAME}-dashboard"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    assert json.loads(text) == json.loads((CHART_DIR / "files" / "dashboard.json").read_text())


def test_the_dashboard_can_go_to_grafanas_namespace_and_folder(helm: Helm) -> None:
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"dashboards": "doks"},
            "annotations": {"grafana_folder": "Platform"},
        }
    }
    metadata = one(helm.render(values=values), "ConfigMap")["metadata"]
    assert metadata["namespace"] == "monitoring"
    # Helm merges maps: the default label stays unless it is set to null.
    assert metadata["labels"]["dashboards"] == "doks"
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["annotations"] == {"grafana_folder": "Platform"}


# --- the schema -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("metrics.port=9091", "additional properties 'port' not allowed"),
        ("metrics.serviceMonitor.interval=soon", "soon"),
        ("prometheusRule.digitalOceanErrorRatio=2", "exclusiveMaximum"),
        ("prometheusRule.expiringWithinSeconds=1d", "got string, want integer"),
        ("prometheusRule.upSelector=doks", "doks"),
        ("grafanaDashboard.enable=true", "additional properties 'enable' not allowed"),
    ],
)
def test_the_schema_refuses_mistakes_in_the_monitoring_values(
    helm: Helm, setting: str, complaint: str
) -> None:
    with pytest.raises(HelmError) as refused:
        helm.template(extra=[f"--set={setting}"])
    assert complaint in str(refused.value)
