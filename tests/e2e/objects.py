"""Helpers for end-to-end tests: DOClusterAccess objects, their Secrets, and a consumer."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client, config

from doks_access_testkit.emulator import DEMO_CLUSTER_IDS, DEMO_TOKEN, Emulator
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from doks_access_testkit.processes import ManagedProcess
from tests import kube

if TYPE_CHECKING:
    from tests.conftest import Cluster

GROUP, VERSION, PLURAL = "doks-access.dev", "v1alpha1", "doclusteraccesses"
CLUSTER_ID = DEMO_CLUSTER_IDS["prod-cluster-01"]
EMULATOR_USER = "doks-emulator-admin"


def create_token_secret(
    api: client.ApiClient, namespace: str, token: str = DEMO_TOKEN, name: str = "digitalocean-api"
) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            string_data={"token": token},
        ),
    )


# The finalizer the daemon-based operator (up to 146d7fb) put on every object.
LEGACY_FINALIZER = f"{GROUP}/daemon"


def apply_access(
    api: client.ApiClient,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    *,
    finalizers: list[str] | None = None,
) -> None:
    metadata: dict[str, Any] = {"name": name}
    if finalizers:
        metadata["finalizers"] = finalizers
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DOClusterAccess",
        "metadata": metadata,
        # The token Secret every test creates, unless the object names an account instead.
        "spec": spec
        if "accountRef" in spec
        else {"tokenSecretRef": {"name": "digitalocean-api"}, **spec},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def get_access(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return found


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


def wait_for_condition(
    api: client.ApiClient, namespace: str, name: str, kind: str, status: str, reason: str | None
) -> dict[str, Any]:
    def matches() -> dict[str, Any] | None:
        obj = get_access(api, namespace, name)
        found = condition(obj, kind)
        if found and found["status"] == status and reason in (None, found["reason"]):
            return obj
        return None

    return kube.eventually(matches, what=f"{name} {kind}={status} ({reason})", timeout=60)


def kubeconfig_of(api: client.ApiClient, namespace: str, secret: str, key: str) -> bytes:
    read = client.CoreV1Api(api).read_namespaced_secret(secret, namespace)
    return base64.b64decode(read.data[key])


def whoami(raw: bytes, tmp_path: Path) -> str:
    path = tmp_path / "consumer.kubeconfig"
    path.write_bytes(raw)
    with config.new_client_from_config(config_file=str(path)) as consumer:
        review = client.AuthenticationV1Api(consumer).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
    username: str = review.status.user_info.username
    return username


def events_of(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str]]:
    listed = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [(e.type, e.reason) for e in listed.items]


def patch_access(api: client.ApiClient, namespace: str, name: str, body: dict[str, Any]) -> None:
    """A merge patch of one DOClusterAccess (spec, labels or annotations)."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body
    )


def request_refresh(api: client.ApiClient, namespace: str, name: str, value: str) -> None:
    """Set ``doks-access.dev/refresh-requested-at``, the manual trigger."""
    annotations = {"doks-access.dev/refresh-requested-at": value}
    patch_access(api, namespace, name, {"metadata": {"annotations": annotations}})


def solo_cluster(api: client.ApiClient, namespace: str, digitalocean: Emulator) -> str:
    """A cluster only this test's objects use (an account and token of its own, the token Secret
    created): the emulator's counts for it are this test's alone, whatever else is running."""
    account = f"solo-{namespace}"
    token = digitalocean.add_token(account=account)
    cluster = digitalocean.add_cluster(EmulatedCluster(name="solo", account=account))
    create_token_secret(api, namespace, token=token.token)
    return cluster.id


def fetches_for(digitalocean: Emulator, cluster_id: str) -> int:
    """Kubeconfigs the emulator has minted for the cluster."""
    return len(digitalocean.issued_credentials(cluster_id=cluster_id))


def leader_elected_replica(
    name: str, *, cluster: Cluster, digitalocean: Emulator, namespace: str, lease: str, logs: Path
) -> ManagedProcess:
    """``doks-access run`` for ``namespace`` with leader election on the Lease ``lease`` there,
    logging to ``logs/<name>.log``."""
    return ManagedProcess(
        name=name,
        args=[
            sys.executable,
            "-m",
            "doks_access",
            "run",
            f"--kubeconfig={cluster.kubeconfig_path}",
            f"--namespace={namespace}",
            "--leader-election",
            f"--leader-election-namespace={namespace}",
            f"--leader-election-lease-name={lease}",
        ],
        log_path=logs / f"{name}.log",
        env={
            **os.environ,
            "DOKS_ACCESS_DIGITALOCEAN_API_URL": digitalocean.api_url,
            "DOKS_ACCESS_DIGITALOCEAN_CA_FILE": str(digitalocean.ca_file),
        },
    )
