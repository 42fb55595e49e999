"""Each output format, read the way its consumer reads it, authenticates against a real apiserver.

Argo CD builds a client from the cluster Secret's ``server`` and ``config`` JSON; Flux and Cluster
API load the kubeconfig under ``value``; plain workloads load the configured key. Each consumer is
checked once, and again after a renewal.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS
from tests import kube
from tests.e2e.objects import (
    CLUSTER_ID,
    EMULATOR_USER,
    apply_access,
    create_token_secret,
    patch_access,
    request_refresh,
    wait_for_condition,
    whoami,
)

pytestmark = pytest.mark.usefixtures("operator")

Consumer = Callable[[client.V1Secret, Path], str]


def _decoded(secret: client.V1Secret, key: str) -> bytes:
    return base64.b64decode(secret.data[key])


def _argo_cd(secret: client.V1Secret, tmp_path: Path) -> str:
    """Like Argo CD's SecretToCluster: server + config.{bearerToken, tlsClientConfig}."""
    assert secret.metadata.labels["argocd.argoproj.io/secret-type"] == "cluster"
    config = json.loads(_decoded(secret, "config"))
    tls = config["tlsClientConfig"]
    configuration = client.Configuration()
    configuration.host = _decoded(secret, "server").decode().rstrip("/")
    with tempfile.NamedTemporaryFile("wb", suffix=".crt", dir=tmp_path, delete=False) as ca:
        ca.write(base64.b64decode(tls["caData"]))
    configuration.ssl_ca_cert = ca.name
    if "bearerToken" in config:
        configuration.api_key = {"authorization": f"Bearer {config['bearerToken']}"}
    else:
        cert, key = tmp_path / "client.crt", tmp_path / "client.key"
        cert.write_bytes(base64.b64decode(tls["certData"]))
        key.write_bytes(base64.b64decode(tls["keyData"]))
        configuration.cert_file, configuration.key_file = str(cert), str(key)
    with client.ApiClient(configuration) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
    username: str = review.status.user_info.username
    return username


def _kubeconfig_key(key: str) -> Consumer:
    def consume(secret: client.V1Secret, tmp_path: Path) -> str:
        return whoami(_decoded(secret, key), tmp_path)

    return consume


def _cluster_api(secret: client.V1Secret, tmp_path: Path) -> str:
    assert secret.type == "cluster.x-k8s.io/secret"
    assert secret.metadata.labels["cluster.x-k8s.io/cluster-name"] == "prod"
    return whoami(_decoded(secret, "value"), tmp_path)


CASES = [
    pytest.param({"format": "Kubeconfig", "key": "config"}, _kubeconfig_key("config"), id="plain"),
    pytest.param({"format": "Flux"}, _kubeconfig_key("value"), id="flux"),
    pytest.param({"format": "ClusterAPI"}, _cluster_api, id="cluster-api"),
    pytest.param({"format": "ArgoCD"}, _argo_cd, id="argo-cd"),
]


@pytest.mark.parametrize(("target", "consume"), CASES)
def test_the_consumer_authenticates_before_and_after_a_renewal(
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    target: dict[str, str],
    consume: Consumer,
) -> None:
    create_token_secret(api, namespace)
    spec = {"clusterID": CLUSTER_ID, "expirySeconds": 3600, "target": {**target}}
    spec["target"]["name"] = "prod-kubeconfig"
    core = client.CoreV1Api(api)

    apply_access(api, namespace, "prod", spec)
    wait_for_condition(api, namespace, "prod", "Ready", "True", "Issued")
    first = core.read_namespaced_secret("prod-kubeconfig", namespace)
    assert consume(first, tmp_path) == EMULATOR_USER

    request_refresh(api, namespace, "prod", "rotate")
    renewed = kube.eventually(
        lambda: (
            (s := core.read_namespaced_secret("prod-kubeconfig", namespace)).data != first.data
            and s
        ),
        what="the renewed Secret",
    )
    assert consume(renewed, tmp_path) == EMULATOR_USER


def test_argo_cd_gets_certificate_data_from_a_legacy_cluster(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    legacy = DEMO_CLUSTER_IDS["legacy-cluster"]
    apply_access(api, namespace, "old", {"clusterID": legacy, "target": {"format": "ArgoCD"}})
    wait_for_condition(api, namespace, "old", "Ready", "True", "Issued")

    secret = client.CoreV1Api(api).read_namespaced_secret("old-kubeconfig", namespace)
    config = json.loads(_decoded(secret, "config"))

    assert "bearerToken" not in config
    assert _argo_cd(secret, tmp_path) == EMULATOR_USER


def test_switching_to_and_from_cluster_api_replaces_the_secret(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "prod", {"clusterID": CLUSTER_ID})
    wait_for_condition(api, namespace, "prod", "Ready", "True", "Issued")
    core = client.CoreV1Api(api)

    patch_access(api, namespace, "prod", {"spec": {"target": {"format": "ClusterAPI"}}})
    capi = kube.eventually(
        lambda: (
            (s := core.read_namespaced_secret("prod-kubeconfig", namespace)).type
            == "cluster.x-k8s.io/secret"
            and s
        ),
        what="the Secret to become a Cluster API Secret",
    )
    assert _cluster_api(capi, tmp_path) == EMULATOR_USER
    assert "kubeconfig" not in capi.data

    patch_access(api, namespace, "prod", {"spec": {"target": {"format": "Kubeconfig"}}})
    plain = kube.eventually(
        lambda: (
            (s := core.read_namespaced_secret("prod-kubeconfig", namespace)).type == "Opaque" and s
        ),
        what="the Secret to become Opaque again",
    )
    assert whoami(_decoded(plain, "kubeconfig"), tmp_path) == EMULATOR_USER
    assert "cluster.x-k8s.io/cluster-name" not in (plain.metadata.labels or {})


def test_user_labels_and_annotations_never_override_the_operators_own(
    api: client.ApiClient, namespace: str
) -> None:
    create_token_secret(api, namespace)
    target = {
        "format": "ArgoCD",
        "labels": {
            "team": "platform",
            "app.kubernetes.io/managed-by": "someone-else",
            "argocd.argoproj.io/secret-type": "repository",
        },
        "annotations": {"note": "hello", "doks-access.dev/owner": "elsewhere/x"},
    }
    apply_access(api, namespace, "labelled", {"clusterID": CLUSTER_ID, "target": target})
    wait_for_condition(api, namespace, "labelled", "Ready", "True", "Issued")

    secret = client.CoreV1Api(api).read_namespaced_secret("labelled-kubeconfig", namespace)

    labels, annotations = secret.metadata.labels, secret.metadata.annotations
    assert labels["team"] == "platform"
    assert labels["app.kubernetes.io/managed-by"] == "doks-access-operator"
    assert labels["argocd.argoproj.io/secret-type"] == "cluster"
    assert annotations["note"] == "hello"
    assert annotations["doks-access.dev/owner"] == f"{namespace}/labelled"
