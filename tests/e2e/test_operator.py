"""End to end: DOClusterAccess in, a Secret that consumers can use out, renewed before expiry.

The operator runs as its own process; the emulator issues credentials that the session's real
kube-apiserver accepts until they expire, so "the consumer keeps working" is checked against real
enforcement, not the operator's bookkeeping.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from doks_access_testkit.emulator import DEMO_TOKEN, Emulator, Fault
from tests import kube
from tests.e2e.objects import (
    CLUSTER_ID,
    EMULATOR_USER,
    apply_access,
    condition,
    create_token_secret,
    events_of,
    fetches_for,
    get_access,
    kubeconfig_of,
    request_refresh,
    solo_cluster,
    wait_for_condition,
    whoami,
)
from tests.running_operator import OperatorRunner

pytestmark = pytest.mark.usefixtures("operator")


def test_a_new_object_gets_a_working_credential_and_becomes_ready(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    cluster_id = solo_cluster(api, namespace, digitalocean)

    apply_access(api, namespace, "prod", {"clusterID": cluster_id, "expirySeconds": 3600})

    obj = wait_for_condition(api, namespace, "prod", "Ready", "True", "Issued")
    status = obj["status"]
    assert status["secretName"] == "prod-kubeconfig"
    assert status["clusterID"] == cluster_id
    assert status["server"].startswith("https://127.0.0.1:")
    issued = datetime.datetime.fromisoformat(status["issuedAt"])
    expires = datetime.datetime.fromisoformat(status["expiresAt"])
    renewal = datetime.datetime.fromisoformat(status["renewalTime"])
    assert expires - issued == datetime.timedelta(seconds=3600)
    # Default renewBefore is a third of the lifetime, with up to 10 % of it as earlier jitter.
    lead = expires - renewal
    assert datetime.timedelta(minutes=20) <= lead <= datetime.timedelta(minutes=22)
    assert condition(obj, "Stalled") is None
    # Kopf keeps no state on the object, and no finalizer: nothing needs to run at deletion.
    assert "finalizers" not in obj["metadata"]
    assert not [k for k in obj["metadata"].get("annotations") or {} if "kopf" in k]
    assert "kopf" not in obj["status"]
    raw = kubeconfig_of(api, namespace, "prod-kubeconfig", "kubeconfig")
    assert whoami(raw, tmp_path) == EMULATOR_USER
    assert fetches_for(digitalocean, cluster_id) == 1
    kube.eventually(
        lambda: ("Normal", "Issued") in events_of(api, namespace, "prod"),
        what="the Issued event",
    )


def test_the_credential_is_renewed_before_expiry_and_consumers_never_fail(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "short", {"clusterID": CLUSTER_ID, "expirySeconds": 15})
    wait_for_condition(api, namespace, "short", "Ready", "True", "Issued")

    # A consumer that re-reads the Secret before every request, like Flux does, for three
    # lifetimes: it must never be refused.
    deadline = time.monotonic() + 45
    failures, identities, tokens = 0, set(), set()
    while time.monotonic() < deadline:
        raw = kubeconfig_of(api, namespace, "short-kubeconfig", "kubeconfig")
        tokens.add(raw)
        try:
            identities.add(whoami(raw, tmp_path))
        except ApiException as exc:
            if exc.status != 401:
                raise
            failures += 1
        time.sleep(0.5)

    assert failures == 0
    assert identities == {EMULATOR_USER}
    assert len(tokens) >= 3  # renewed at least twice in 45 s of 15 s credentials
    final = get_access(api, namespace, "short")
    assert condition(final, "Ready")["status"] == "True"


def test_a_deleted_secret_is_recreated_at_once(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "drift", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "drift", "Ready", "True", "Issued")
    core = client.CoreV1Api(api)
    first_uid = core.read_namespaced_secret("drift-kubeconfig", namespace).metadata.uid

    core.delete_namespaced_secret("drift-kubeconfig", namespace)

    def recreated() -> bool:
        try:
            secret = core.read_namespaced_secret("drift-kubeconfig", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return bool(secret.metadata.uid != first_uid)

    kube.eventually(recreated, what="the operator to recreate the deleted Secret", timeout=30)
    raw = kubeconfig_of(api, namespace, "drift-kubeconfig", "kubeconfig")
    assert whoami(raw, tmp_path) == EMULATOR_USER


def test_a_refused_token_stalls_the_object_but_keeps_the_valid_secret(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "refused", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "refused", "Ready", "True", "Issued")
    before = kubeconfig_of(api, namespace, "refused-kubeconfig", "kubeconfig")

    fault = digitalocean.add_fault(Fault(kind="status", status=401, endpoint="kubeconfig"))
    try:
        request_refresh(api, namespace, "refused", "now-1")
        obj = wait_for_condition(api, namespace, "refused", "Stalled", "True", "Unauthorized")
    finally:
        digitalocean.remove_fault(fault.id)

    assert condition(obj, "Ready")["status"] == "True"  # the old credential is still valid
    assert obj["status"]["failedAttempts"] >= 1
    assert obj["status"]["lastFailureReason"] == "Unauthorized"
    after = kubeconfig_of(api, namespace, "refused-kubeconfig", "kubeconfig")
    assert after == before
    assert whoami(after, tmp_path) == EMULATOR_USER
    assert DEMO_TOKEN not in str(obj)


def test_an_invalid_spec_gets_a_condition_not_a_crash(
    api: client.ApiClient, namespace: str, operator: OperatorRunner
) -> None:
    create_token_secret(api, namespace)
    # The CRD's pattern admits it; the operator refuses it: it would renew at the moment of expiry.
    apply_access(api, namespace, "hasty", {"clusterID": CLUSTER_ID, "renewBefore": "0s"})

    obj = wait_for_condition(api, namespace, "hasty", "Stalled", "True", "InvalidSpec")

    assert "renewBefore" in condition(obj, "Stalled")["message"]
    assert condition(obj, "Ready")["reason"] == "InvalidSpec"
    assert operator.process.exit_code() is None


def test_the_operator_log_holds_no_credential(
    operator: OperatorRunner, digitalocean: Emulator
) -> None:
    # Runs last in this module, after the scenarios above made the operator log at DEBUG.
    log = operator.log()
    assert "fetching a credential" in log
    secrets = [DEMO_TOKEN] + [c.token for c in digitalocean.issued_credentials() if c.token]
    assert len(secrets) > 1
    leaked = [s[:6] for s in secrets if s in log]
    assert leaked == []
    assert "PRIVATE KEY" not in log
