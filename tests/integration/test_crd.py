"""The API server itself rejects malformed DOClusterAccess objects, with a clear message."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "doks-access.dev", "v1alpha1", "doclusteraccesses"
CLUSTER_ID = "bd5f5959-5e1e-4205-a714-a914373942af"


def _create(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DOClusterAccess",
        "metadata": {"name": "sample"},
        "spec": spec,
    }
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def _rejection(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as raised:
        _create(api, namespace, spec)
    assert raised.value.status == 422
    return str(raised.value.body)


@pytest.mark.usefixtures("crds")
def test_defaults_are_filled_in(api: client.ApiClient, namespace: str) -> None:
    created = _create(
        api, namespace, {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "do-token"}}
    )
    spec = created["spec"]
    assert spec["tokenSecretRef"] == {"name": "do-token", "key": "token"}
    assert spec["target"] == {"format": "Kubeconfig", "deletionPolicy": "Delete", "adopt": False}
    assert (spec["verify"], spec["suspend"]) == (False, False)


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"clusterID": CLUSTER_ID, "clusterName": "prod", "tokenSecretRef": {"name": "t"}},
            "exactly one of clusterID or clusterName must be set",
        ),
        ({"tokenSecretRef": {"name": "t"}}, "exactly one of clusterID or clusterName must be set"),
        (
            {
                "clusterID": CLUSTER_ID,
                "tokenSecretRef": {"name": "t"},
                "target": {"format": "Flux", "key": "kubeconfig"},
            },
            "key can only be set with format Kubeconfig",
        ),
        ({"clusterID": "not-a-uuid", "tokenSecretRef": {"name": "t"}}, "spec.clusterID"),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "expirySeconds": -1},
            "spec.expirySeconds",
        ),
        ({"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "Not_DNS"}}, "tokenSecretRef.name"),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "renewBefore": "2 hours"},
            "spec.renewBefore",
        ),
        (
            {"clusterID": CLUSTER_ID, "tokenSecretRef": {"name": "t"}, "target": {"format": "X"}},
            "spec.target.format",
        ),
        ({"clusterID": CLUSTER_ID}, "spec.tokenSecretRef"),
    ],
)
def test_invalid_specs_are_rejected_with_a_message_naming_the_problem(
    api: client.ApiClient, namespace: str, spec: dict[str, Any], message: str
) -> None:
    assert message in _rejection(api, namespace, spec)
