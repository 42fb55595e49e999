"""The examples in examples/ are valid: the API server accepts their Secrets, DOClusterAccess
objects and workloads (server-side dry run), and each consumer points at the Secret and key that
the DOClusterAccess writes."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils

from tests import kube

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GROUP, VERSION = "doks-access.dev", "v1alpha1"
PLURALS = {"DOClusterAccess": "doclusteraccesses", "DOClusterAccessSet": "doclusteraccesssets"}
# Kinds whose CRDs the local control plane does not have (Argo CD, Flux): checked by shape only.
FOREIGN_KINDS = {"Application", "ApplicationSet", "GitRepository", "Kustomization"}


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def _access(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (access,) = [d for d in documents if d["kind"] == "DOClusterAccess"]
    return access


@pytest.fixture
def created_namespaces(api: client.ApiClient) -> Iterator[list[str]]:
    """Namespaces the examples name that had to be created; deleted afterwards."""
    created: list[str] = []
    yield created
    core = client.CoreV1Api(api)
    for namespace in created:
        core.delete_namespace(namespace)
    for namespace in created:  # several examples use the same namespace: let the next create it
        kube.eventually(
            lambda name=namespace: kube.is_absent(lambda: core.read_namespace(name)),
            what=f"namespace {namespace} to be deleted",
        )


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_accepted_by_the_api_server(
    api: client.ApiClient, name: str, created_namespaces: list[str]
) -> None:
    for document in _documents(name):
        if document["kind"] in FOREIGN_KINDS:
            continue
        namespace = document["metadata"].get("namespace")
        if document["kind"] in PLURALS:
            _ensure_namespace(api, namespace, created_namespaces)
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[document["kind"]], document, dry_run="All"
            )
        elif namespace is not None:
            _ensure_namespace(api, namespace, created_namespaces)
            utils.create_from_dict(api, document, namespace=namespace, dry_run="All")


def _ensure_namespace(api: client.ApiClient, namespace: str, created: list[str]) -> None:
    core = client.CoreV1Api(api)
    if namespace not in {n.metadata.name for n in core.list_namespace().items}:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        created.append(namespace)


def test_the_flux_kustomization_reads_the_secret_the_operator_writes() -> None:
    documents = _documents("flux-kustomization.yaml")
    target = _access(documents)["spec"]["target"]
    (kustomization,) = [d for d in documents if d["kind"] == "Kustomization"]
    assert target["format"] == "Flux"
    assert kustomization["spec"]["kubeConfig"]["secretRef"] == {"name": target["name"]}


def test_the_argo_cd_application_targets_the_registered_cluster_name() -> None:
    documents = _documents("argocd-cluster.yaml")
    access = _access(documents)
    (application,) = [d for d in documents if d["kind"] == "Application"]
    assert access["spec"]["target"]["format"] == "ArgoCD"
    assert access["metadata"]["namespace"] == application["metadata"]["namespace"] == "argocd"
    assert application["spec"]["destination"]["name"] == access["metadata"]["name"]


def test_the_deployment_mounts_the_whole_secret_never_a_sub_path() -> None:
    documents = _documents("deployment-volume.yaml")
    target = _access(documents)["spec"]["target"]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "doks", "secret": {"secretName": target["name"]}}]
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert "subPath" not in mount
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["KUBECONFIG"] == f"{mount['mountPath']}/{target['key']}"


def test_the_cluster_api_example_follows_the_naming_contract() -> None:
    target = _access(_documents("cluster-api.yaml"))["spec"]["target"]
    assert target["format"] == "ClusterAPI"
    assert target["name"].endswith("-kubeconfig")


def _set(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (access_set,) = [d for d in documents if d["kind"] == "DOClusterAccessSet"]
    return access_set


def test_the_application_set_selects_the_secrets_the_fleet_writes() -> None:
    documents = _documents("argocd-fleet.yaml")
    target = _set(documents)["spec"]["template"]["spec"]["target"]
    (application_set,) = [d for d in documents if d["kind"] == "ApplicationSet"]
    (generator,) = application_set["spec"]["generators"]
    wanted = generator["clusters"]["selector"]["matchLabels"]
    assert target["format"] == "ArgoCD"
    assert wanted.items() <= target["labels"].items()
    assert _set(documents)["metadata"]["namespace"] == application_set["metadata"]["namespace"]


def test_the_flux_fleet_kustomization_names_a_secret_the_set_writes() -> None:
    documents = _documents("flux-fleet.yaml")
    access_set = _set(documents)
    target = access_set["spec"]["template"]["spec"]["target"]
    (kustomization,) = [d for d in documents if d["kind"] == "Kustomization"]
    secret = kustomization["spec"]["kubeConfig"]["secretRef"]["name"]
    cluster = secret.removesuffix("-kubeconfig")
    assert target["format"] == "Flux"
    assert target["name"].replace("$(cluster.name)", cluster) == secret
    assert fnmatch.fnmatchcase(cluster, access_set["spec"]["selector"]["namePattern"])
