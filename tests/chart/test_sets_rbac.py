"""DOClusterAccessSet under the chart's RBAC: enough for the operator, and right for people.

The operator: the chart is installed, the operator runs with a token of the chart's ServiceAccount
and nothing else, and a set is reconciled end to end: its child created and Ready, a hand edit of
the child put back, the child removed when its cluster leaves the selection, Events recorded about
the set, and no refusal logged. Both modes: cluster-wide (a ClusterRole) and namespaced (a Role in
the served namespace only).

People: the chart's aggregated ClusterRoles give Kubernetes' built-in "edit" role the right to
create, change and delete sets, and "view" the right to read them only. The session's control
plane runs no clusterrole-aggregation controller (nothing else needs it), so this test runs one,
the real one from kube-controller-manager, for as long as it needs it.

Like ``test_rbac.py``, these tests run before ``tests/e2e`` in a full session, so that suite's
session-wide operator is not yet running and cannot act on these objects instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from doks_access_testkit.binaries import control_plane_bin_dir
from doks_access_testkit.emulator import Emulator
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from doks_access_testkit.processes import ManagedProcess
from tests import kube
from tests.chart.helm import Helm
from tests.chart.operator_as import (
    chart_operator,
    explained,
    installed_as_service_account,
    log_entries,
    refusals,
)
from tests.conftest import Cluster
from tests.e2e import objects

GROUP, VERSION = objects.GROUP, objects.VERSION
SETS = "doclusteraccesssets"
SET_KIND = "DOClusterAccessSet"
SET_LABEL = "doks-access.dev/set"
REFRESH = "doks-access.dev/refresh-requested-at"
MODES = {
    "cluster-wide": False,
    "namespaced": True,
}


# --- helpers ----------------------------------------------------------------------------------


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def _set_body(name: str, tags: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": SET_KIND,
        "metadata": {"name": name},
        "spec": {
            "tokenSecretRef": {"name": "digitalocean-api"},
            "selector": {"tags": tags},
            "template": {"spec": {"expirySeconds": 3600}},
        },
    }


def _get_set(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = _custom(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, name
    )
    return found


def _resync(api: client.ApiClient, namespace: str, name: str) -> None:
    """Ask the operator to list the clusters now (a new refresh annotation)."""
    patch = {"metadata": {"annotations": {REFRESH: f"{time.time():.6f}"}}}
    _custom(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, SETS, name, patch)


def _wait_for_set(
    api: client.ApiClient, namespace: str, name: str, **counts: int
) -> dict[str, Any]:
    """The set once it is Ready for its current generation with ``counts`` in its status."""

    def ready() -> dict[str, Any] | None:
        obj = _get_set(api, namespace, name)
        status = obj.get("status") or {}
        condition = objects.condition(obj, "Ready") or {}
        if (
            condition.get("status") == "True"
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and all(status.get(key) == value for key, value in counts.items())
        ):
            return obj
        return None

    return kube.eventually(ready, what=f"set {namespace}/{name} Ready with {counts}")


def _children(api: client.ApiClient, namespace: str, set_name: str) -> list[dict[str, Any]]:
    listed = _custom(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, objects.PLURAL, label_selector=f"{SET_LABEL}={set_name}"
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


def _set_event_reasons(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    listed = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={SET_KIND}"
    )
    return [event.reason for event in listed.items]


def _prove_set_end_to_end(
    api: client.ApiClient,
    process: ManagedProcess,
    digitalocean: Emulator,
    *,
    namespace: str,
    ours: set[str],
) -> None:
    """Child created and Ready, a hand edit put back, the child removed, no refusal logged."""

    def still_running() -> None:
        assert process.exit_code() is None, f"the operator exited:\n{process.log_tail(60)}"

    account = f"rbac-{namespace}"
    token = digitalocean.add_token(account=account).token
    objects.create_token_secret(api, namespace, token=token)
    cluster = digitalocean.add_cluster(
        EmulatedCluster(name="fleet-1", account=account, tags=("env:prod",))
    )
    digitalocean.add_cluster(EmulatedCluster(name="other-1", account=account, tags=("env:dev",)))

    # Created, listed, its status patched: the set is Ready with one Ready child.
    _custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, _set_body("fleet", ["env:prod"])
    )
    try:
        found = _wait_for_set(api, namespace, "fleet", matched=1, ready=1, pending=0)
    except AssertionError:
        still_running()
        raise AssertionError(f"not Ready; the operator's log:\n{process.log_tail(60)}") from None
    (child,) = _children(api, namespace, "fleet")
    name = child["metadata"]["name"]
    assert child["spec"]["clusterID"] == cluster.id
    (owner,) = child["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        SET_KIND,
        found["metadata"]["uid"],
        True,
    )
    assert not owner.get("blockOwnerDeletion")  # which would need more RBAC on the set
    objects.wait_for_condition(api, namespace, name, "Ready", "True", None)
    secret = objects.get_access(api, namespace, name)["status"]["secretName"]
    assert objects.kubeconfig_of(api, namespace, secret, "kubeconfig").startswith(b"apiVersion")

    # Patched: a hand edit of the child is put back.
    objects.patch_access(api, namespace, name, {"spec": {"expirySeconds": 600}})
    kube.eventually(
        lambda: objects.get_access(api, namespace, name)["spec"].get("expirySeconds") == 3600,
        what="the hand edit of the child to be put back",
    )

    # Deleted: the cluster leaves the selection, and its child goes.
    digitalocean.update_cluster(cluster.id, tags=("env:retired",))
    _resync(api, namespace, "fleet")
    kube.eventually(
        lambda: not _children(api, namespace, "fleet"), what="the set's child to be removed"
    )
    _wait_for_set(api, namespace, "fleet", matched=0)
    reasons = _set_event_reasons(api, namespace, "fleet")
    assert {"ClusterAdded", "ClusterRemoved"} <= set(reasons), reasons

    still_running()
    refused = refusals(log_entries(process.log_path), ours=ours)
    assert not refused, explained(refused)


# --- the operator at work on a set with only the chart's permissions ---------------------------


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("namespaced", MODES.values(), ids=MODES.keys())
def test_the_operator_reconciles_a_set_with_only_the_charts_permissions(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    digitalocean: Emulator,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
    namespaced: bool,
) -> None:
    served = other_namespace if namespaced else namespace
    with chart_operator(
        cluster_helm,
        cluster,
        api,
        digitalocean,
        namespace=namespace,
        directory=tmp_path,
        served=served if namespaced else None,
    ) as process:
        _prove_set_end_to_end(
            api, process, digitalocean, namespace=served, ours={namespace, served}
        )


# --- people, through Kubernetes' built-in edit and view roles ----------------------------------


@contextlib.contextmanager
def _role_aggregation(cluster: Cluster, directory: Path) -> Iterator[None]:
    """Kubernetes' clusterrole-aggregation controller, run for the session's control plane (a
    cluster of one's own runs it already)."""
    if cluster.control_plane is None:
        yield
        return
    process = ManagedProcess(
        name="clusterrole-aggregation",
        args=[
            str(control_plane_bin_dir() / "kube-controller-manager"),
            f"--kubeconfig={cluster.kubeconfig_path}",
            "--controllers=clusterrole-aggregation-controller",
            "--leader-elect=false",
            "--secure-port=0",  # nothing to serve
        ],
        log_path=directory / "clusterrole-aggregation.log",
    )
    try:
        yield
        assert process.exit_code() is None, process.log_tail()
    finally:
        process.stop()


def _bind(api: client.ApiClient, namespace: str, *, user: str, cluster_role: str) -> None:
    body = {
        "metadata": {"name": f"{user}-{cluster_role}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(namespace, body)


@contextlib.contextmanager
def _as_user(cluster: Cluster, user: str) -> Iterator[client.ApiClient]:
    """An API client of the administrator's, impersonating ``user``."""
    with config.new_client_from_config(config_file=str(cluster.kubeconfig_path)) as impersonating:
        impersonating.set_default_header("Impersonate-User", user)
        yield impersonating


def _status_of(operation: Callable[[], object]) -> int:
    try:
        operation()
    except client.ApiException as exc:
        return int(exc.status)
    return 200


def _allowed_once_aggregated(operation: Callable[[], object], *, what: str) -> None:
    """``operation`` succeeds, once the aggregation controller has caught up (403 until then);
    any other error fails the test."""

    def attempt() -> bool:
        try:
            operation()
        except client.ApiException as exc:
            if exc.status == 403:
                return False
            raise
        return True

    kube.eventually(attempt, what=what, timeout=30)


@pytest.mark.usefixtures("crds")
def test_edit_may_create_change_and_delete_sets_and_view_only_read_them(
    cluster_helm: Helm,
    cluster: Cluster,
    api: client.ApiClient,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    editor, viewer = f"editor-{other_namespace}", f"viewer-{other_namespace}"
    _bind(api, other_namespace, user=editor, cluster_role="edit")
    _bind(api, other_namespace, user=viewer, cluster_role="view")
    with (
        installed_as_service_account(
            cluster_helm,
            cluster,
            api,
            namespace=namespace,
            values={},
            path=tmp_path / "operator.kubeconfig",
        ),
        _role_aggregation(cluster, tmp_path),
        _as_user(cluster, editor) as as_editor,
        _as_user(cluster, viewer) as as_viewer,
    ):
        edit, view = _custom(as_editor), _custom(as_viewer)
        args = (GROUP, VERSION, other_namespace, SETS)
        _allowed_once_aggregated(
            lambda: edit.create_namespaced_custom_object(*args, _set_body("team", ["a"])),
            what="edit to be allowed to create a DOClusterAccessSet",
        )
        edit.patch_namespaced_custom_object(*args, "team", {"spec": {"selector": {"tags": ["b"]}}})
        _allowed_once_aggregated(
            lambda: view.get_namespaced_custom_object(*args, "team"),
            what="view to be allowed to read a DOClusterAccessSet",
        )
        assert [
            item["metadata"]["name"] for item in view.list_namespaced_custom_object(*args)["items"]
        ] == ["team"]
        assert view.get_namespaced_custom_object(*args, "team")["spec"]["selector"] == {
            "tags": ["b"]
        }

        refused = {
            "create": lambda: view.create_namespaced_custom_object(*args, _set_body("x", ["a"])),
            "patch": lambda: view.patch_namespaced_custom_object(
                *args, "team", {"metadata": {"labels": {"x": "y"}}}
            ),
            "delete": lambda: view.delete_namespaced_custom_object(*args, "team"),
            "patch status": lambda: view.patch_namespaced_custom_object_status(
                *args, "team", {"status": {"matched": 1}}
            ),
        }
        assert {verb: _status_of(call) for verb, call in refused.items()} == dict.fromkeys(
            refused, 403
        )

        edit.delete_namespaced_custom_object(*args, "team")
        assert kube.is_absent(lambda: view.get_namespaced_custom_object(*args, "team"))
