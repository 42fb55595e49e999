"""The local control plane behaves like a cluster where the operator depends on it.

These run against any cluster (``DOKS_ACCESS_TEST_KUBECONFIG``) except where they need the harness
itself: minting users from its client CA, or its binaries.
"""

from __future__ import annotations

import base64
import datetime
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from doks_access_testkit.controlplane import ControlPlane
from tests import kube
from tests.conftest import Cluster


def _self_subject_review(api: client.ApiClient) -> Any:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    return client.AuthenticationV1Api(api).create_self_subject_review(body)


def _client_from(document: dict[str, Any], tmp_path: Path) -> client.ApiClient:
    path = tmp_path / f"{uuid.uuid4().hex}.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return config.new_client_from_config(config_file=str(path))


def test_a_secret_round_trips_byte_for_byte(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    payload = bytes(range(256))
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="round-trip", labels={"purpose": "test"}),
            type="Opaque",
            data={"blob": base64.b64encode(payload).decode()},
        ),
    )

    read = core.read_namespaced_secret("round-trip", namespace)

    assert base64.b64decode(read.data["blob"]) == payload
    assert read.metadata.labels == {"purpose": "test"}
    assert read.type == "Opaque"


def test_a_client_certificate_works_until_it_expires_then_gets_401(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    lifetime = datetime.timedelta(seconds=5)
    document = control_plane.user_kubeconfig(user="alice", groups=("team-a",), lifetime=lifetime)
    issued = datetime.datetime.now(datetime.UTC)

    with _client_from(document, tmp_path) as api:
        review = _self_subject_review(api)
        assert review.status.user_info.username == "alice"
        assert "team-a" in review.status.user_info.groups

        # Real time has to pass for a real certificate to expire.
        remaining = issued + lifetime - datetime.datetime.now(datetime.UTC)
        time.sleep(max(0.0, remaining.total_seconds()) + 1.5)

        with pytest.raises(ApiException) as raised:
            _self_subject_review(api)
    assert raised.value.status == 401


def test_an_unexpired_user_without_rbac_is_authenticated_but_forbidden(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    document = control_plane.user_kubeconfig(user="bob", lifetime=datetime.timedelta(minutes=5))
    with _client_from(document, tmp_path) as api, pytest.raises(ApiException) as raised:
        client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert raised.value.status == 403


def test_deleting_an_owner_garbage_collects_its_dependent(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="dependent",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1",
                        kind="ConfigMap",
                        name="owner",
                        uid=owner.metadata.uid,
                    )
                ],
            ),
            string_data={"k": "v"},
        ),
    )

    core.delete_namespaced_config_map("owner", namespace)

    kube.eventually(
        lambda: kube.is_absent(lambda: core.read_namespaced_secret("dependent", namespace)),
        what="the garbage collector to delete the dependent Secret",
    )


def test_a_namespace_deletion_completes(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"test-doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_secret(
        name, client.V1Secret(metadata=client.V1ObjectMeta(name="content"), string_data={"a": "b"})
    )

    core.delete_namespace(name)

    kube.eventually(
        lambda: kube.is_absent(lambda: core.read_namespace(name)),
        what=f"namespace {name} to be deleted",
    )


def test_the_crds_are_established_and_serve_objects(
    api: client.ApiClient, crds: list[str], namespace: str
) -> None:
    assert "doclusteraccesses.doks-access.dev" in crds
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": "doks-access.dev/v1alpha1",
        "kind": "DOClusterAccess",
        "metadata": {"name": "prod"},
        "spec": {
            "clusterID": "bd5f5959-5e1e-4205-a714-a914373942af",
            "tokenSecretRef": {"name": "digitalocean-api"},
        },
    }
    custom.create_namespaced_custom_object(
        "doks-access.dev", "v1alpha1", namespace, "doclusteraccesses", body
    )

    stored = custom.get_namespaced_custom_object(
        "doks-access.dev", "v1alpha1", namespace, "doclusteraccesses", "prod"
    )
    assert stored["spec"]["clusterID"] == body["spec"]["clusterID"]


def test_the_harness_uses_a_fresh_namespace_per_test(cluster: Cluster, namespace: str) -> None:
    assert namespace.startswith("test-")
    with cluster.api_client() as api:
        found = client.CoreV1Api(api).read_namespace(namespace)
    assert found.status.phase == "Active"
