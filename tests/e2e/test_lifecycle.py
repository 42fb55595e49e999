"""End to end: restarts, expiry, suspension, renaming, ownership and rate limits."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from doks_access_testkit.controlplane import ControlPlane
from doks_access_testkit.emulator import Emulator, Fault
from tests import kube
from tests.conftest import register_processes
from tests.e2e.objects import (
    CLUSTER_ID,
    EMULATOR_USER,
    GROUP,
    PLURAL,
    VERSION,
    apply_access,
    condition,
    create_token_secret,
    events_of,
    fetches_for,
    get_access,
    kubeconfig_of,
    patch_access,
    solo_cluster,
    wait_for_condition,
    whoami,
)
from tests.running_operator import OperatorRunner

pytestmark = pytest.mark.usefixtures("operator")


def _secret_or_none(api: client.ApiClient, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_restart_with_fresh_secrets_makes_no_call_and_no_write(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, operator: OperatorRunner
) -> None:
    cluster_id = solo_cluster(api, namespace, digitalocean)
    apply_access(api, namespace, "steady", {"clusterID": cluster_id, "expirySeconds": 3600})
    before = wait_for_condition(api, namespace, "steady", "Ready", "True", "Issued")
    secret_version = _secret_or_none(api, namespace, "steady-kubeconfig").metadata.resource_version
    planned = f"[{namespace}/steady] nothing to fetch until"
    fetches = fetches_for(digitalocean, cluster_id)
    plans_before = operator.log().count(planned)

    operator.restart()

    kube.eventually(
        lambda: operator.log().count(planned) > plans_before,
        what="the restarted operator to re-plan the object from its Secret",
    )
    assert fetches_for(digitalocean, cluster_id) == fetches == 1
    after = get_access(api, namespace, "steady")
    assert after["status"] == before["status"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    current = _secret_or_none(api, namespace, "steady-kubeconfig").metadata.resource_version
    assert current == secret_version


def test_an_expired_credential_turns_ready_false_and_stays_in_place(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "doomed", {"clusterID": CLUSTER_ID, "expirySeconds": 8})
    issued = wait_for_condition(api, namespace, "doomed", "Ready", "True", "Issued")
    expires_at = datetime.datetime.fromisoformat(issued["status"]["expiresAt"])

    fault = digitalocean.add_fault(Fault(kind="status", status=503, endpoint="kubeconfig"))
    try:
        obj = wait_for_condition(api, namespace, "doomed", "Ready", "False", "Expired")
    finally:
        digitalocean.remove_fault(fault.id)

    assert datetime.datetime.now(datetime.UTC) >= expires_at
    assert condition(obj, "Reconciling")["reason"] == "RetryingAfterError"
    assert obj["status"]["lastFailureReason"] == "Server"
    assert _secret_or_none(api, namespace, "doomed-kubeconfig") is not None
    kube.eventually(
        lambda: ("Warning", "Expired") in events_of(api, namespace, "doomed"),
        what="the Expired event",
    )
    # Several retries failed, for one reason: one event, not one per retry.
    assert obj["status"]["failedAttempts"] >= 2
    assert events_of(api, namespace, "doomed").count(("Warning", "RenewalFailed")) == 1
    # Once DigitalOcean answers again, the next retry brings a fresh credential.
    wait_for_condition(api, namespace, "doomed", "Ready", "True", "Issued")


def test_a_suspended_object_fetches_nothing(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id = solo_cluster(api, namespace, digitalocean)

    apply_access(api, namespace, "paused", {"clusterID": cluster_id, "suspend": True})

    obj = wait_for_condition(api, namespace, "paused", "Ready", "False", "Suspended")
    assert _secret_or_none(api, namespace, "paused-kubeconfig") is None
    assert fetches_for(digitalocean, cluster_id) == 0
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_renaming_the_target_writes_the_new_secret_and_removes_the_old(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "moving", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "moving", "Ready", "True", "Issued")

    patch_access(api, namespace, "moving", {"spec": {"target": {"name": "moved"}}})

    kube.eventually(
        lambda: get_access(api, namespace, "moving")["status"].get("secretName") == "moved",
        what="status.secretName to follow the new target",
    )
    assert whoami(kubeconfig_of(api, namespace, "moved", "kubeconfig"), tmp_path) == EMULATOR_USER
    kube.eventually(
        lambda: _secret_or_none(api, namespace, "moving-kubeconfig") is None,
        what="the old Secret to be removed",
    )


@pytest.mark.parametrize(("policy", "kept"), [("Delete", False), ("Retain", True)])
def test_deleting_the_object_applies_the_deletion_policy(
    api: client.ApiClient, namespace: str, policy: str, kept: bool
) -> None:
    create_token_secret(api, namespace)
    spec = {"clusterID": CLUSTER_ID, "target": {"deletionPolicy": policy}}
    apply_access(api, namespace, "temporary", spec)
    wait_for_condition(api, namespace, "temporary", "Ready", "True", "Issued")

    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "temporary"
    )

    kube.eventually(
        lambda: kube.is_absent(lambda: get_access(api, namespace, "temporary")),
        what="the DOClusterAccess to be deleted",
    )
    if kept:
        secret = _secret_or_none(api, namespace, "temporary-kubeconfig")
        assert secret is not None
        assert not secret.metadata.owner_references
    else:
        kube.eventually(
            lambda: _secret_or_none(api, namespace, "temporary-kubeconfig") is None,
            what="the garbage collector to delete the owned Secret",
        )


def test_a_foreign_secret_is_never_overwritten_unless_adopted(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="handmade"), string_data={"kubeconfig": "mine"}
        ),
    )
    spec = {"clusterID": CLUSTER_ID, "target": {"name": "handmade"}}

    apply_access(api, namespace, "grabby", spec)

    wait_for_condition(api, namespace, "grabby", "Stalled", "True", "SecretConflict")
    assert core.read_namespaced_secret("handmade", namespace).data["kubeconfig"] == "bWluZQ=="
    kube.eventually(
        lambda: ("Warning", "SecretConflict") in events_of(api, namespace, "grabby"),
        what="the SecretConflict event",
    )

    patch_access(
        api, namespace, "grabby", {"spec": {"target": {"name": "handmade", "adopt": True}}}
    )

    wait_for_condition(api, namespace, "grabby", "Ready", "True", "Issued")
    assert whoami(kubeconfig_of(api, namespace, "handmade", "kubeconfig"), tmp_path) == (
        EMULATOR_USER
    )


def test_a_rate_limited_fetch_waits_and_says_so(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    # A token of its own: the operator rightly pauses every request made with a rate-limited token.
    create_token_secret(api, namespace, token=digitalocean.add_token().token)
    fault = digitalocean.add_fault(
        Fault(kind="status", status=429, retry_after=3600, endpoint="kubeconfig")
    )
    try:
        apply_access(api, namespace, "throttled", {"clusterID": CLUSTER_ID})
        obj = wait_for_condition(api, namespace, "throttled", "Reconciling", "True", "RateLimited")
    finally:
        digitalocean.remove_fault(fault.id)

    assert condition(obj, "Ready")["reason"] == "Pending"
    renewal = datetime.datetime.fromisoformat(obj["status"]["renewalTime"])
    assert renewal - datetime.datetime.now(datetime.UTC) > datetime.timedelta(minutes=50)
    kube.eventually(
        lambda: ("Warning", "RateLimited") in events_of(api, namespace, "throttled"),
        what="the RateLimited event",
    )


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_the_operator_rides_out_a_restart_of_the_control_plane(
    api: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    operator: OperatorRunner,
    tmp_path: Path,
    component: str,
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "steadfast", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "steadfast", "Ready", "True", "Issued")

    restart = {
        "kube-apiserver": control_plane.restart_apiserver,
        "etcd": control_plane.restart_etcd,
    }
    restart[component]()
    register_processes(control_plane)

    assert operator.process.exit_code() is None
    # Its watches came back: a deleted Secret is noticed and written again.
    core = client.CoreV1Api(api)
    core.delete_namespaced_secret("steadfast-kubeconfig", namespace)
    kube.eventually(
        lambda: _secret_or_none(api, namespace, "steadfast-kubeconfig") is not None,
        what=f"the Secret to be recreated after the {component} restart",
        timeout=90,
    )
    raw = kubeconfig_of(api, namespace, "steadfast-kubeconfig", "kubeconfig")
    assert whoami(raw, tmp_path) == EMULATOR_USER
    assert operator.process.exit_code() is None
