"""The Helm chart: it lints, its schema refuses mistakes, it renders what each mode needs, its CRDs
and the plain manifests stay in sync, and the real apiserver accepts what it renders."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import kube
from tests.chart import chart_docs, manifests
from tests.chart.conftest import installed
from tests.chart.helm import CHART_DIR, REPO_ROOT, Helm, HelmError, documents, of_kind, one
from tests.conftest import Cluster

SOURCE_CRDS = REPO_ROOT / "crds"
CHART_CRDS = CHART_DIR / "files" / "crds"
CRD_FILES = sorted(path.name for path in SOURCE_CRDS.glob("*.yaml"))
FULLNAME = "doks-access-operator"
NAMESPACE = "doks-access-system"
SELECTOR = {
    "app.kubernetes.io/name": "doks-access-operator",
    "app.kubernetes.io/instance": "doks-access-operator",
}
HIGH_AVAILABILITY = {"highAvailability": {"enabled": True}}
EVERYTHING = {
    "highAvailability": {"enabled": True, "replicas": 3},
    "watchNamespaces": ["team-a", "team-b"],
    "networkPolicy": {"enabled": True},
    "digitalocean": {
        "apiURL": "https://do-proxy.example:8443",
        "caBundle": {"configMapName": "do-ca", "key": "bundle.pem"},
    },
    "image": {"digest": "sha256:" + "ab" * 32},
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    "envFrom": [{"configMapRef": {"name": "proxy-settings", "optional": True}, "prefix": "P_"}],
    "extraVolumes": [{"name": "extra-ca", "configMap": {"name": "extra-ca", "optional": True}}],
    "extraVolumeMounts": [{"name": "extra-ca", "mountPath": "/etc/extra-ca", "readOnly": True}],
    "commonAnnotations": {"example.com/owner": "platform"},
    "logging": {"format": "json", "level": "DEBUG"},
    "grafanaDashboard": {"enabled": True},
}
# The ServiceMonitor and PrometheusRule need the Prometheus Operator's CRDs, which the local control
# plane lacks; everything the apiserver cannot check is in here (tests/chart/test_observability.py
# checks their shape).
MONITORING = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
}
METRICS_OFF = {"metrics": {"enabled": False}}
NAMESPACED_KINDS = {
    "Deployment",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Service",
    "ServiceMonitor",
    "PrometheusRule",
    "ConfigMap",
}


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    return container


def _env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(objects)["env"]}


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


# --- helm lint and the values schema --------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{}, HIGH_AVAILABILITY, EVERYTHING, {**EVERYTHING, **MONITORING}, METRICS_OFF],
    ids=["default", "high availability", "everything on", "monitoring", "metrics off"],
)
def test_lint_passes_in_strict_mode(helm: Helm, values: dict[str, Any]) -> None:
    output = helm.lint(values=values)
    assert "1 chart(s) linted, 0 chart(s) failed" in output
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("nope=1", "additional properties 'nope' not allowed"),
        ("image.tga=latest", "additional properties 'tga' not allowed"),
        ("highAvailability.replicas=two", "got string, want integer"),
        ("highAvailability.replicas=1", "minimum"),
        ("crds.enabled=maybe", "got string, want boolean"),
        ("logging.format=xml", "xml"),
        ("watchNamespaces[0]=Not_A_Namespace", "Not_A_Namespace"),
        ("workers=0", "minimum"),
        ("workers=many", "got string, want integer"),
    ],
)
def test_the_schema_refuses_unknown_keys_and_wrong_values(
    helm: Helm, setting: str, complaint: str
) -> None:
    with pytest.raises(HelmError) as refused:
        helm.template(extra=[f"--set={setting}"])
    assert complaint in str(refused.value)


def test_every_object_in_the_schema_refuses_unknown_keys_or_is_a_kubernetes_pass_through() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                assert "Kubernetes structure" in node.get("$comment", ""), path
            for key, value in node.items():
                walk(value, f"{path}/{key}" if key != "properties" else path)
        elif isinstance(node, list):
            for value in node:
                walk(value, path)

    walk(schema, "")


def _value_keys(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, key, the comment lines right above it) for each key in values.yaml.

    Keys nested inside Kubernetes structures (resources, security contexts) are explained by the
    comment on the structure itself.
    """
    keys: list[tuple[int, str, list[str]]] = []
    lines = text.splitlines()
    opaque_indent: int | None = None
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        if opaque_indent is not None and indent > opaque_indent:
            continue
        opaque_indent = None
        start = number
        while start and lines[start - 1].strip().startswith("#"):
            start -= 1
        keys.append((number + 1, match.group(2), [c.strip() for c in lines[start:number]]))
        if match.group(2) in {"resources", "podSecurityContext", "containerSecurityContext"}:
            opaque_indent = indent
    return keys


def test_every_value_has_a_full_sentence_comment() -> None:
    keys = _value_keys((CHART_DIR / "values.yaml").read_text())
    assert len(keys) > 40
    undocumented = [f"line {n}: {key}" for n, key, comment in keys if not comment]
    assert not undocumented, "keys without a comment above them: " + ", ".join(undocumented)
    # helm-docs takes a key's description from the comment above it that starts with "# --"
    # (optionally followed by a type in parentheses); the lines below it continue it.
    unmarked = [f"line {n}: {key}" for n, key, comment in keys if not _helm_docs_comment(comment)]
    assert not unmarked, "comments that do not start with '# -- ': " + ", ".join(unmarked)
    unfinished = [f"line {n}: {key}" for n, key, comment in keys if not _ends_a_sentence(comment)]
    assert not unfinished, "comments that are not full sentences: " + ", ".join(unfinished)


def _helm_docs_comment(comment: list[str]) -> bool:
    return bool(comment) and re.match(r"^# -- (\([a-z]+\) )?[A-Z`]", comment[0]) is not None


def _ends_a_sentence(comment: list[str]) -> bool:
    return bool(comment) and comment[-1].rstrip().endswith((".", ".)", ":"))


# --- the chart's README and metadata --------------------------------------------------------


def test_the_chart_readme_is_what_helm_docs_generates_from_values_yaml(helm_docs: Path) -> None:
    committed = chart_docs.README.read_text() if chart_docs.README.exists() else ""
    generated = chart_docs.generate(helm_docs)
    assert committed == generated, (
        f"{chart_docs.README.relative_to(REPO_ROOT)} is out of date with values.yaml, Chart.yaml "
        f"or README.md.gotmpl; regenerate it with `{chart_docs.REGENERATE}`"
    )
    # Every value has its row, with its comment as the description.
    for _, key, _ in _value_keys((CHART_DIR / "values.yaml").read_text()):
        assert re.search(rf"^\| `([\w.]+\.)?{re.escape(key)}` \|", generated, re.M), key
    assert "UPGRADING.md" in generated


def test_upgrading_notes_are_linked_from_the_readmes() -> None:
    upgrading = (REPO_ROOT / "UPGRADING.md").read_text()
    assert "helm upgrade" in upgrading
    install = (REPO_ROOT / "README.md").read_text().split("\n## Install\n", 1)[1].split("\n## ")[0]
    assert "UPGRADING.md" in install
    assert "UPGRADING.md" in (CHART_DIR / "README.md.gotmpl").read_text()


ARTIFACT_HUB_CAPABILITIES = {
    "Basic Install",
    "Seamless Upgrades",
    "Full Lifecycle",
    "Deep Insights",
    "Auto Pilot",
}
PROJECT = "https://github.com/doks-access/doks-access-operator"


def test_chart_metadata_is_complete_and_agrees_with_the_chart(helm: Helm) -> None:
    chart = yaml.safe_load(helm.run("show", "chart", str(CHART_DIR)))
    assert chart["home"] == PROJECT
    assert PROJECT in chart["sources"]
    icon = chart["icon"]
    assert icon.startswith("https://raw.githubusercontent.com/doks-access/doks-access-operator/")
    assert icon.endswith(".svg")
    assert (REPO_ROOT / icon.split("/main/", 1)[1]).is_file()
    assert chart["maintainers"]
    assert all(m.get("name") for m in chart["maintainers"])
    annotations = chart["annotations"]
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'license = "{annotations["artifacthub.io/license"]}"' in pyproject
    assert annotations["artifacthub.io/operator"] == "true"
    assert annotations["artifacthub.io/operatorCapabilities"] in ARTIFACT_HUB_CAPABILITIES
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    images = yaml.safe_load(annotations["artifacthub.io/images"])
    assert [image["image"] for image in images] == [
        f"{values['image']['repository']}:{chart['appVersion']}"
    ]
    crds = [yaml.safe_load((CHART_CRDS / name).read_text()) for name in CRD_FILES]
    assert yaml.safe_load(annotations["artifacthub.io/crds"]) == [
        {
            "kind": crd["spec"]["names"]["kind"],
            "version": crd["spec"]["versions"][0]["name"],
            "name": crd["metadata"]["name"],
            "displayName": listed["displayName"],
            "description": listed["description"],
        }
        for crd, listed in zip(
            crds, yaml.safe_load(annotations["artifacthub.io/crds"]), strict=True
        )
    ]
    examples = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    assert [(e["apiVersion"], e["kind"]) for e in examples] == [
        (
            f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}",
            crd["spec"]["names"]["kind"],
        )
        for crd in crds
    ]
    changes = yaml.safe_load(annotations["artifacthub.io/changes"])
    assert changes
    for change in changes:
        assert change["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"}
        assert change["description"]


# --- what helm template renders -------------------------------------------------------------


def test_default_values_render_a_single_cluster_wide_operator(helm: Helm) -> None:
    rendered = helm.render()
    assert _kinds(rendered) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = _deployment(rendered)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = _env(rendered)
    assert env["DOKS_ACCESS_NAMESPACES"] == ""
    assert env["DOKS_ACCESS_LEADER_ELECTION"] == "false"
    assert "DOKS_ACCESS_LEADER_ELECTION_NAMESPACE" not in env
    assert "DOKS_ACCESS_DIGITALOCEAN_API_URL" not in env  # the operator's default: the real API
    assert env["DOKS_ACCESS_LIVENESS_ENDPOINT"] == "http://:8080/healthz"
    assert env["DOKS_ACCESS_METRICS_ENDPOINT"] == "http://:9090/metrics"
    assert (env["DOKS_ACCESS_LOG_LEVEL"], env["DOKS_ACCESS_LOG_FORMAT"]) == ("INFO", "text")
    assert env["DOKS_ACCESS_RATE_LIMIT_PER_MINUTE"] == "250"
    assert env["DOKS_ACCESS_RATE_LIMIT_PER_HOUR"] == "5000"
    assert env["DOKS_ACCESS_RATE_LIMIT_MARGIN"] == "0.1"
    assert env["DOKS_ACCESS_WORKERS"] == "8"


def test_the_number_of_workers_reaches_the_operator(helm: Helm) -> None:
    assert _env(helm.render(values={"workers": 16}))["DOKS_ACCESS_WORKERS"] == "16"


def test_the_pod_is_locked_down_by_default(helm: Helm) -> None:
    rendered = helm.render()
    pod = _deployment(rendered)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = _container(rendered)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    # Memory is limited; CPU is not: a burst of renewals or a start-up needs a whole core.
    assert set(container["resources"]["limits"]) == {"memory"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    # The only writable place is a small in-memory /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    ]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["enableServiceLinks"] is False


def test_the_liveness_probe_asks_the_operators_health_endpoint(helm: Helm) -> None:
    container = _container(helm.render())
    assert container["ports"][0] == {"name": "healthz", "containerPort": 8080, "protocol": "TCP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert "livenessProbe" not in _container(
        helm.render(values={"livenessProbe": {"enabled": False}})
    )


def test_a_startup_probe_holds_the_liveness_probe_back_until_the_operator_answers(
    helm: Helm,
) -> None:
    container = _container(helm.render())
    assert container["startupProbe"] == {
        "httpGet": {"path": "/healthz", "port": "healthz"},
        "periodSeconds": 5,
        "timeoutSeconds": 5,
        "failureThreshold": 60,
    }
    assert "startupProbe" not in _container(
        helm.render(values={"startupProbe": {"enabled": False}})
    )


def test_the_image_defaults_to_the_apps_version_and_can_be_pinned_by_digest(helm: Helm) -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert _container(helm.render())["image"].endswith(f":{chart['appVersion']}")
    digest = "sha256:" + "0f" * 32
    image = _container(helm.render(values={"image": {"digest": digest}}))["image"]
    assert image == f"ghcr.io/doks-access/doks-access-operator@{digest}"
    assert _container(helm.render())["args"] == ["run"]


def test_high_availability_adds_leader_election_rolling_updates_and_a_budget(helm: Helm) -> None:
    rendered = helm.render(values=HIGH_AVAILABILITY)
    deployment = _deployment(rendered)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = _env(rendered)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["DOKS_ACCESS_LEADER_ELECTION"] == "true"
    assert env["DOKS_ACCESS_LEADER_ELECTION_NAMESPACE"] == "$(POD_NAMESPACE)"
    assert env["DOKS_ACCESS_LEADER_ELECTION_LEASE_NAME"] == FULLNAME
    names = [e["name"] for e in _container(rendered)["env"]]
    assert names.index("POD_NAMESPACE") < names.index("DOKS_ACCESS_LEADER_ELECTION_NAMESPACE")
    budget = one(rendered, "PodDisruptionBudget")
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}
    (role,) = of_kind(rendered, "Role")
    assert role["metadata"] == {**role["metadata"], "name": f"{FULLNAME}-leader-election"}
    (binding,) = of_kind(rendered, "RoleBinding")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-leader-election"
    assert "PodDisruptionBudget" not in _kinds(helm.render())


def test_watch_namespaces_renders_a_role_per_namespace_and_tells_the_operator(helm: Helm) -> None:
    rendered = helm.render(values={"watchNamespaces": ["team-a", "team-b"]})
    assert _env(rendered)["DOKS_ACCESS_NAMESPACES"] == "team-a,team-b"
    assert sorted(r["metadata"]["namespace"] for r in of_kind(rendered, "Role")) == [
        "team-a",
        "team-b",
    ]
    for binding in of_kind(rendered, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    assert not of_kind(rendered, "ClusterRoleBinding")
    assert [r["metadata"]["name"] for r in of_kind(rendered, "ClusterRole")] == [
        f"{FULLNAME}-edit",
        f"{FULLNAME}-view",
    ]


def test_every_object_carries_the_standard_labels_and_selects_by_name_and_instance(
    helm: Helm,
) -> None:
    rendered = helm.render(values={**EVERYTHING, **MONITORING})
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    for obj in rendered:
        labels = obj["metadata"]["labels"]
        assert labels["helm.sh/chart"] == f"doks-access-operator-{chart['version']}"
        assert labels["app.kubernetes.io/version"] == chart["appVersion"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels.items() >= SELECTOR.items(), obj["kind"]
    deployment = _deployment(rendered)
    assert deployment["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= SELECTOR.items()
    assert one(rendered, "PodDisruptionBudget")["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert one(rendered, "NetworkPolicy")["spec"]["podSelector"] == {"matchLabels": SELECTOR}


def test_namespaced_objects_go_to_the_release_namespace_roles_to_the_watched_ones(
    helm: Helm,
) -> None:
    rendered = helm.render(values={**EVERYTHING, **MONITORING})
    for obj in rendered:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] not in NAMESPACED_KINDS:
            assert namespace is None, obj["kind"]
        elif obj["kind"] in ("Role", "RoleBinding") and not obj["metadata"]["name"].endswith(
            "-leader-election"
        ):
            assert namespace in ("team-a", "team-b")
        else:
            assert namespace == NAMESPACE, obj["kind"]


def test_the_network_policy_lets_out_only_dns_the_api_server_and_the_digitalocean_api(
    helm: Helm,
) -> None:
    assert "NetworkPolicy" not in _kinds(helm.render())
    policy = one(helm.render(values={"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": 8080, "protocol": "TCP"}]},
        {"ports": [{"port": 9090, "protocol": "TCP"}]},  # metrics, on by default
    ]
    ports = [
        sorted((p["port"], p["protocol"]) for p in rule["ports"])
        for rule in policy["spec"]["egress"]
    ]
    assert ports == [
        [(53, "TCP"), (53, "UDP")],
        [(443, "TCP"), (6443, "TCP")],
        [(443, "TCP")],
    ]


def test_a_private_ca_for_the_digitalocean_api_is_mounted_and_named(helm: Helm) -> None:
    rendered = helm.render(values=EVERYTHING)
    env = _env(rendered)
    assert env["DOKS_ACCESS_DIGITALOCEAN_API_URL"] == "https://do-proxy.example:8443"
    assert env["DOKS_ACCESS_DIGITALOCEAN_CA_FILE"] == "/etc/doks-access/digitalocean-ca/bundle.pem"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    volumes = _deployment(rendered)["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "digitalocean-ca",
        "configMap": {"name": "do-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]},
    } in volumes


def test_rbac_and_the_service_account_can_be_left_to_others(helm: Helm) -> None:
    rendered = helm.render(
        values={
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "existing"},
            "crds": {"enabled": False},
        }
    )
    assert _kinds(rendered) == ["Deployment", "Service"]
    assert _deployment(rendered)["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
    binding = one(helm.render(values={"serviceAccount": {"name": "named"}}), "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "named"


# --- settings that would hurt the cluster are refused ---------------------------------------


def test_a_service_account_the_chart_does_not_create_must_be_named(helm: Helm) -> None:
    # Without a name, the cluster-wide Secret rights would go to the namespace's default account.
    with pytest.raises(HelmError) as refused:
        helm.template(values={"serviceAccount": {"create": False}})
    assert "serviceAccount.create=false needs serviceAccount.name" in str(refused.value)
    assert '"default"' in str(refused.value)


@pytest.mark.parametrize(("replicas", "minimum"), [(2, 2), (3, 3), (3, 5)])
def test_a_budget_that_allows_no_disruption_is_refused(
    helm: Helm, replicas: int, minimum: int
) -> None:
    values = {
        "highAvailability": {
            "enabled": True,
            "replicas": replicas,
            "podDisruptionBudget": {"enabled": True, "minAvailable": minimum},
        }
    }
    with pytest.raises(HelmError) as refused:
        helm.template(values=values)
    assert f"minAvailable={minimum} with {replicas} replicas allows no voluntary disruption" in (
        str(refused.value)
    )


def test_a_budget_can_say_how_many_may_be_down_instead(helm: Helm) -> None:
    budget = {"enabled": True, "minAvailable": None, "maxUnavailable": 1}
    values = {"highAvailability": {"enabled": True, "replicas": 3, "podDisruptionBudget": budget}}
    rendered = one(helm.render(values=values), "PodDisruptionBudget")
    assert rendered["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in rendered["spec"]
    both = {**budget, "minAvailable": 1}
    with pytest.raises(HelmError, match="not both"):
        helm.template(values={"highAvailability": {"enabled": True, "podDisruptionBudget": both}})


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice, as kustomize and other strict tools do."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = {key for key in keys if keys.count(key) > 1}
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"keys given twice: {sorted(repeated)}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def test_labels_given_twice_appear_once_and_the_charts_own_win(helm: Helm) -> None:
    values = {
        **MONITORING,
        "commonLabels": {"app.kubernetes.io/name": "mine", "team": "common", "tier": "ops"},
        "podLabels": {"team": "pod", "app.kubernetes.io/instance": "mine"},
        "serviceAccount": {"labels": {"team": "account", "tier": "ops"}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"tier": "monitor"}}},
        "prometheusRule": {"enabled": True, "labels": {"team": "rules"}},
    }
    text = helm.template(values=values)

    strict = list(yaml.load_all(text, Loader=_StrictLoader))

    labels = {(d["kind"], d["metadata"]["name"]): d["metadata"]["labels"] for d in strict if d}
    account = labels[("ServiceAccount", FULLNAME)]
    assert (account["team"], account["tier"]) == ("account", "ops")
    assert account["app.kubernetes.io/name"] == "doks-access-operator"
    pod = one(strict, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert (pod["team"], pod["app.kubernetes.io/instance"]) == ("pod", FULLNAME)
    assert labels[("ServiceMonitor", FULLNAME)]["tier"] == "monitor"
    assert labels[("PrometheusRule", FULLNAME)]["team"] == "rules"


def test_alert_labels_cannot_set_the_severity(helm: Helm) -> None:
    values = {**MONITORING, "prometheusRule": {"enabled": True, "alertLabels": {"severity": "x"}}}
    with pytest.raises(HelmError, match="alertLabels cannot set severity"):
        helm.template(values=values)


def test_global_image_settings_of_a_parent_chart_are_used(helm: Helm) -> None:
    values = {
        "global": {"imageRegistry": "mirror.example:5000", "imagePullSecrets": ["shared", "own"]},
        "imagePullSecrets": [{"name": "own"}],
    }
    pod = _deployment(helm.render(values=values))["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith(
        "mirror.example:5000/doks-access/doks-access-operator:"
    )
    assert pod["imagePullSecrets"] == [{"name": "own"}, {"name": "shared"}]
    plain = _deployment(helm.render())["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in plain
    with pytest.raises(HelmError, match="additional properties 'storageClass' not allowed"):
        helm.template(values={"global": {"storageClass": "fast"}})


# --- the CRDs: one source of truth ----------------------------------------------------------


def test_common_annotations_go_on_every_object_and_each_objects_own_win(helm: Helm) -> None:
    values = {
        **EVERYTHING,
        **MONITORING,
        "commonAnnotations": {"example.com/owner": "platform", "example.com/tier": "common"},
        "deploymentAnnotations": {"example.com/tier": "deployment"},
        "podAnnotations": {"example.com/tier": "pod"},
        "metrics": {
            "serviceMonitor": {"enabled": True, "annotations": {"example.com/tier": "monitor"}}
        },
    }
    rendered = helm.render(values=values)
    for obj in rendered:
        assert obj["metadata"]["annotations"]["example.com/owner"] == "platform", obj["kind"]
    deployment = _deployment(rendered)
    assert deployment["metadata"]["annotations"]["example.com/tier"] == "deployment"
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "example.com/owner": "platform",
        "example.com/tier": "pod",
    }
    assert one(rendered, "ServiceMonitor")["metadata"]["annotations"]["example.com/tier"] == (
        "monitor"
    )
    for role in of_kind(rendered, "ClusterRole"):
        assert role["metadata"]["annotations"]["example.com/tier"] == "common"
    for crd in of_kind(rendered, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # A key given twice appears once (strict YAML parsers refuse a duplicate key).
    list(yaml.load_all(helm.template(values=values), Loader=_StrictLoader))


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a key given twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        assert len(keys) == len(set(keys)), f"a key given twice: {keys}"
        return super().construct_mapping(node, deep=deep)


def test_without_common_annotations_objects_have_only_their_own(helm: Helm) -> None:
    rendered = helm.render()
    assert "annotations" not in _deployment(rendered)["metadata"]
    assert "annotations" not in one(rendered, "ServiceAccount")["metadata"]


def test_extra_volumes_mounts_and_env_from_reach_the_pod(helm: Helm) -> None:
    rendered = helm.render(values=EVERYTHING)
    pod = _deployment(rendered)["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == EVERYTHING["extraVolumes"][0]
    container = _container(rendered)
    assert container["volumeMounts"][-1] == EVERYTHING["extraVolumeMounts"][0]
    assert container["envFrom"] == EVERYTHING["envFrom"]
    # The chart's own volumes stay.
    assert {volume["name"] for volume in pod["volumes"]} == {"tmp", "digitalocean-ca", "extra-ca"}
    assert "envFrom" not in _container(helm.render())


def test_the_pods_go_to_linux_nodes_by_default(helm: Helm) -> None:
    pod = _deployment(helm.render())["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    pod = _deployment(
        helm.render(values={"nodeSelector": {"kubernetes.io/os": None, "pool": "system"}})
    )["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "system"}


def test_extra_objects_are_rendered_as_templates_with_the_release(helm: Helm) -> None:
    as_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "{{ .Release.Name }}-settings",
            "namespace": "{{ .Release.Namespace }}",
        },
        "data": {"workers": "{{ .Values.workers }}"},
    }
    as_string = (
        "apiVersion: v1\n"
        "kind: Secret\n"
        "metadata:\n"
        '  name: {{ include "doks-access-operator.fullname" . }}-token\n'
        "  labels:\n"
        '    {{- include "doks-access-operator.labels" . | nindent 4 }}\n'
        "stringData:\n"
        "  token: placeholder\n"
    )
    rendered = helm.render(values={"extraObjects": [as_map, as_string]})
    config_map = one(rendered, "ConfigMap")
    assert config_map["metadata"] == {"name": f"{FULLNAME}-settings", "namespace": NAMESPACE}
    assert config_map["data"] == {"workers": "8"}
    secret = one(rendered, "Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-token"
    assert secret["metadata"]["labels"].items() >= SELECTOR.items()
    assert "ConfigMap" not in _kinds(helm.render())


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("extraVolumes[0].emptyDir={}", "missing property 'name'"),
        ('extraVolumeMounts[0].name="x"', "missing property 'mountPath'"),
        ('envFrom[0].secretRf.name="x"', "additional properties 'secretRf' not allowed"),
        ("commonAnnotations.a=1", "got number, want string"),
        ("extraObjects[0]=1", "got number, want string or object"),
        ('metrics.serviceMonitor.relabelings[0].action="Rename"', "Rename"),
    ],
)
def test_the_schema_refuses_mistakes_in_the_extra_values(
    helm: Helm, setting: str, complaint: str
) -> None:
    with pytest.raises(HelmError) as refused:
        helm.template(extra=[f"--set-json={setting}"])
    assert complaint in str(refused.value)


def test_the_chart_ships_every_crd_of_crds_and_nothing_else() -> None:
    assert CRD_FILES == [
        "clusterdoaccounts.doks-access.dev.yaml",
        "doclusteraccesses.doks-access.dev.yaml",
        "doclusteraccesssets.doks-access.dev.yaml",
    ]
    assert sorted(path.name for path in CHART_CRDS.iterdir()) == CRD_FILES


@pytest.mark.parametrize("crd_file", CRD_FILES)
def test_the_charts_copy_of_the_crd_is_identical_to_crds(crd_file: str) -> None:
    chart_crd = CHART_CRDS / crd_file
    assert chart_crd.read_bytes() == (SOURCE_CRDS / crd_file).read_bytes(), (
        f"{chart_crd.relative_to(REPO_ROOT)} differs from crds/{crd_file}, the source of truth; "
        f"copy it: cp crds/{crd_file} {chart_crd.relative_to(REPO_ROOT)}"
    )


def _crd_named(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (crd,) = [
        o for o in of_kind(objects, "CustomResourceDefinition") if o["metadata"]["name"] == name
    ]
    return crd


@pytest.mark.parametrize("crd_file", CRD_FILES)
def test_the_rendered_crd_is_the_source_crd_kept_on_uninstall(helm: Helm, crd_file: str) -> None:
    source = yaml.safe_load((SOURCE_CRDS / crd_file).read_text())
    name = source["metadata"]["name"]
    crd = _crd_named(helm.render(), name)
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["labels"].items() >= source["metadata"]["labels"].items()
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    unkept = _crd_named(helm.render(values={"crds": {"keep": False}}), name)
    assert "helm.sh/resource-policy" not in unkept["metadata"].get("annotations", {})
    assert not of_kind(helm.render(values={"crds": {"enabled": False}}), "CustomResourceDefinition")


# --- the plain manifests --------------------------------------------------------------------


@pytest.mark.parametrize("variant", manifests.VARIANTS, ids=lambda v: v.file)
def test_the_committed_manifests_are_the_chart_rendered_as_a_static_install(
    helm: Helm, variant: manifests.Variant
) -> None:
    committed = variant.path.read_text() if variant.path.exists() else ""
    assert committed == manifests.render(helm, variant), (
        f"{variant.path.relative_to(REPO_ROOT)} is out of date; regenerate it with "
        f"`{manifests.REGENERATE}`"
    )
    rendered = documents(committed)
    labels = rendered[0]["metadata"]["labels"]
    assert rendered[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": labels},
    }
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "CustomResourceDefinition" not in _kinds(rendered)
    # Not a Helm release: no Helm labels anywhere, pod templates included.
    assert "helm.sh/chart" not in committed
    assert "managed-by: Helm" not in committed
    assert all(
        d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubectl" for d in rendered
    )


def test_the_manifest_variants_are_high_availability_and_namespaced() -> None:
    default, ha, namespaced = (documents(v.path.read_text()) for v in manifests.VARIANTS)
    assert _deployment(default)["spec"]["replicas"] == 1
    assert _deployment(ha)["spec"]["replicas"] == 2
    assert of_kind(ha, "PodDisruptionBudget")
    assert _env(ha)["DOKS_ACCESS_LEADER_ELECTION"] == "true"
    assert _env(namespaced)["DOKS_ACCESS_NAMESPACES"] == NAMESPACE
    # Namespaced: the operator's rights are a Role; the only ClusterRoles are the aggregated ones
    # for people (view, edit).
    operator_roles = [r for r in of_kind(namespaced, "ClusterRole") if "aggregate" not in str(r)]
    assert operator_roles == []
    assert of_kind(namespaced, "Role")


# --- against the apiserver ------------------------------------------------------------------


def _kubectl_apply_dry_run(bin_dir: Path, kubeconfig: Path, text: str) -> str:
    completed = subprocess.run(
        [
            str(bin_dir / "kubectl"),
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=doks-access-chart-test",
            "-f",
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"kubectl apply --dry-run=server:\n{completed.stderr}"
    return completed.stdout


@pytest.mark.parametrize(
    "values",
    [{}, HIGH_AVAILABILITY, "namespaced", "everything", METRICS_OFF],
    ids=["default", "high availability", "namespaced", "everything on", "metrics off"],
)
def test_the_apiserver_accepts_what_the_chart_renders(
    helm: Helm, cluster: Cluster, bin_dir: Path, namespace: str, values: Any
) -> None:
    if values == "namespaced":
        values = {"watchNamespaces": [namespace]}
    elif values == "everything":
        values = {**EVERYTHING, "watchNamespaces": [namespace]}
    text = helm.template(values=values, release=namespace, namespace=namespace)
    output = _kubectl_apply_dry_run(bin_dir, cluster.kubeconfig_path, text)
    assert output.count("serverside-applied (server dry run)") == len(documents(text))


def test_the_apiserver_accepts_the_committed_manifests(
    cluster: Cluster, api: client.ApiClient, bin_dir: Path
) -> None:
    core = client.CoreV1Api(api)
    created = kube.is_absent(lambda: core.read_namespace(NAMESPACE))
    if created:  # a dry run creates nothing, so the objects inside need the namespace to exist
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    try:
        for variant in manifests.VARIANTS:
            text = variant.path.read_text()
            output = _kubectl_apply_dry_run(bin_dir, cluster.kubeconfig_path, text)
            assert output.count("serverside-applied (server dry run)") == len(documents(text))
    finally:
        if created:
            kube.delete_ignoring_absence(lambda: core.delete_namespace(NAMESPACE))


def test_the_operators_pod_is_admitted_under_pod_security_restricted(
    cluster: Cluster, api: client.ApiClient, bin_dir: Path
) -> None:
    """The static install's namespace enforces "restricted". The API server warns about a
    Deployment whose pods would violate it, and refuses such a pod: the Deployment applies
    without a warning, a pod made from its template (as its ReplicaSet would; the local control
    plane runs no such controller) is admitted, and a privileged pod is refused."""
    namespace = f"psa-{uuid.uuid4().hex[:8]}"
    text = manifests.VARIANTS[2].path.read_text().replace(NAMESPACE, namespace)
    kubectl = [str(bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig_path}"]
    core = client.CoreV1Api(api)
    try:
        applied = subprocess.run(
            [*kubectl, "apply", "--server-side", "-f", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "PodSecurity" not in applied.stderr, applied.stderr
        template = _deployment(documents(text))["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", **template}
        pod["metadata"] = {**template["metadata"], "name": "from-the-template"}
        created = core.create_namespaced_pod(namespace, pod)
        assert created.spec.security_context.run_as_non_root is True
        privileged = client.V1Pod(
            metadata=client.V1ObjectMeta(name="privileged"),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="c",
                        image="busybox",
                        security_context=client.V1SecurityContext(privileged=True),
                    )
                ]
            ),
        )
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(namespace, privileged)
        assert refused.value.status == 403
        assert "restricted" in str(refused.value.body)
    finally:
        subprocess.run(
            [*kubectl, "delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def test_helm_install_creates_the_operators_objects(
    cluster_helm: Helm, api: client.ApiClient, namespace: str, other_namespace: str
) -> None:
    name = f"{namespace}-doks-access-operator"
    values = {"highAvailability": {"enabled": True}, "watchNamespaces": [other_namespace]}
    with installed(cluster_helm, release=namespace, namespace=namespace, values=values):
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        rbac, policy = client.RbacAuthorizationV1Api(api), client.PolicyV1Api(api)
        deployment = apps.read_namespaced_deployment(name, namespace)
        assert deployment.spec.replicas == 2
        assert core.read_namespaced_service_account(name, namespace).metadata.name == name
        assert rbac.read_namespaced_role(name, other_namespace).rules
        assert rbac.read_namespaced_role_binding(name, other_namespace).subjects[0].name == name
        assert rbac.read_namespaced_role(f"{name}-leader-election", namespace).rules
        assert policy.read_namespaced_pod_disruption_budget(name, namespace).spec.min_available == 1
        status = json.loads(
            cluster_helm.run("status", namespace, f"--namespace={namespace}", "-o=json")
        )
        assert status["info"]["status"] == "deployed"
        assert "kubectl -n" in status["info"]["notes"]
    assert kube.is_absent(lambda: apps.read_namespaced_deployment(name, namespace))
    assert kube.is_absent(lambda: rbac.read_cluster_role(f"{name}-view"))


def test_notes_tell_the_next_steps(cluster_helm: Helm) -> None:
    # A client-side dry run still asks the cluster for its version.
    output = cluster_helm.run(
        "install",
        "doks-access-operator",
        str(CHART_DIR),
        "--dry-run=client",
        f"--namespace={NAMESPACE}",
        f"--values={cluster_helm.values_file({'crds': {'enabled': False}})}",
    )
    notes = output.partition("\nNOTES:\n")[2]
    assert "kubectl -n platform create secret generic digitalocean-api" in notes
    assert "kind: DOClusterAccess\n" in notes
    assert "kind: DOClusterAccessSet\n" in notes
    assert "kubectl -n platform wait --for=condition=Ready doclusteraccess/prod" in notes
    assert "crds.enabled=false" in notes  # and where the CRDs come from then
    for crd_file in CRD_FILES:
        assert f"kubectl apply --server-side -f crds/{crd_file}" in notes
    # Uninstalling: objects first, while the operator runs; a stale finalizer; CRD ownership.
    assert (
        "kubectl delete doclusteraccesssets,doclusteraccesses --all-namespaces --all\n"
        f"  helm uninstall -n {NAMESPACE} doks-access-operator\n"
    ) in notes
    assert """--type=merge -p '{"metadata":{"finalizers":null}}'""" in notes
    assert "This release owns the CRDs" not in notes  # crds.enabled=false here
