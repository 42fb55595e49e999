"""``spec.clusterName``: resolved by listing every page of clusters, once per spec."""

from __future__ import annotations

import pytest
from kubernetes import client

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, Emulator
from doks_access_testkit.emulator.state import Cluster
from tests import kube
from tests.e2e.objects import (
    apply_access,
    condition,
    create_token_secret,
    kubeconfig_of,
    request_refresh,
    wait_for_condition,
)

pytestmark = pytest.mark.usefixtures("operator")


def test_a_name_is_resolved_through_every_page_and_only_once(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    # An account of its own with 450 clusters: three pages of 200, the wanted one on the last.
    account = f"big-{namespace}"
    token = digitalocean.add_token(account=account).token
    for number in range(449):
        digitalocean.add_cluster(Cluster(name=f"filler-{number:03}", account=account))
    wanted = digitalocean.add_cluster(Cluster(name="needle", region="fra1", account=account))
    create_token_secret(api, namespace, token=token)
    listings = digitalocean.request_count("list_clusters")

    apply_access(api, namespace, "by-name", {"clusterName": "needle", "expirySeconds": 3600})

    obj = wait_for_condition(api, namespace, "by-name", "Ready", "True", "Issued")
    assert obj["status"]["clusterID"] == wanted.id
    assert obj["status"]["clusterName"] == "needle"
    assert digitalocean.request_count("list_clusters") == listings + 3
    secret = client.CoreV1Api(api).read_namespaced_secret("by-name-kubeconfig", namespace)
    assert secret.metadata.annotations["doks-access.dev/cluster-id"] == wanted.id

    # A renewal does not look the name up again.
    before = kubeconfig_of(api, namespace, "by-name-kubeconfig", "kubeconfig")
    request_refresh(api, namespace, "by-name", "again")
    kube.eventually(
        lambda: kubeconfig_of(api, namespace, "by-name-kubeconfig", "kubeconfig") != before,
        what="the refreshed credential",
    )
    assert digitalocean.request_count("list_clusters") == listings + 3


def test_an_unknown_name_stalls_with_cluster_not_found(
    api: client.ApiClient, namespace: str
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "nameless", {"clusterName": "no-such-cluster"})

    obj = wait_for_condition(api, namespace, "nameless", "Stalled", "True", "ClusterNotFound")

    assert "no-such-cluster" in condition(obj, "Stalled")["message"]


def test_a_name_two_clusters_share_stalls_and_names_both(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    # An account of its own, so that the shared demo account keeps its four clusters.
    account = f"twins-{namespace}"
    create_token_secret(api, namespace, token=digitalocean.add_token(account=account).token)
    twin = digitalocean.add_cluster(Cluster(name="twin", region="ams3", account=account))
    other = digitalocean.add_cluster(Cluster(name="twin", region="sfo3", account=account))

    apply_access(api, namespace, "twins", {"clusterName": "twin"})

    obj = wait_for_condition(api, namespace, "twins", "Stalled", "True", "AmbiguousClusterName")
    message = condition(obj, "Stalled")["message"]
    assert twin.id in message
    assert other.id in message
    assert DEMO_CLUSTER_IDS["prod-cluster-01"] not in message
