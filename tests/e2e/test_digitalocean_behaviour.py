"""End to end: what DigitalOcean does beyond its spec, and how the operator reports and heals it.

- The lifetime guard (``spec.verify``): a lifetime DigitalOcean capped below the request, and a
  revoked token, are both caught at a quarter mark -- long before the computed expiry -- and
  replaced at once, with exactly one extra kubeconfig call and no other DigitalOcean call.
- A cluster that requires SSO is ``Stalled`` with ``SSORequired`` before consumers see anything,
  whichever way it refuses a token (the API, or the cluster), and with ``clusterName`` straight from
  the listing, without asking for a credential at all.
- A 400 or 422 on the kubeconfig call is ``Stalled`` with DigitalOcean's own message, retried
  slowly, and at once on a spec change or a new refresh request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from doks_access.bookkeeping import parse_timestamp
from doks_access_testkit.emulator import Emulator, Fault
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from tests import kube
from tests.e2e.objects import (
    apply_access,
    condition,
    create_token_secret,
    events_of,
    get_access,
    kubeconfig_of,
    patch_access,
    request_refresh,
    wait_for_condition,
    whoami,
)

pytestmark = pytest.mark.usefixtures("operator")

LIFETIME = 120  # seconds: guard marks at 30, 60 and 90 s; renewal at 76-80 s


def own_cluster(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, **cluster: Any
) -> tuple[str, str]:
    """A cluster of an account only this test uses (its counts are this test's alone): its ID
    and the account."""
    account = f"behaviour-{namespace}"
    token = digitalocean.add_token(account=account)
    added = digitalocean.add_cluster(EmulatedCluster(name="edge", account=account, **cluster))
    create_token_secret(api, namespace, token=token.token)
    return added.id, account


def calls(digitalocean: Emulator, endpoint: str, account: str) -> int:
    return digitalocean.request_count(endpoint, account=account)


def secret_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# --- the lifetime guard -------------------------------------------------------------------------


def _guarded(api: client.ApiClient, namespace: str, cluster_id: str) -> dict[str, Any]:
    spec = {"clusterID": cluster_id, "expirySeconds": LIFETIME, "verify": True}
    apply_access(api, namespace, "guarded", spec)
    return wait_for_condition(api, namespace, "guarded", "Ready", "True", "Issued")


def _healed(
    api: client.ApiClient, namespace: str, first_issued: str, *, timeout: float
) -> dict[str, Any]:
    def renewed() -> dict[str, Any] | None:
        obj = get_access(api, namespace, "guarded")
        ready = condition(obj, "Ready")
        issued = (obj.get("status") or {}).get("issuedAt")
        if ready and ready["status"] == "True" and issued and issued != first_issued:
            return obj
        return None

    return kube.eventually(renewed, what="a new credential after the rejection", timeout=timeout)


def test_a_capped_lifetime_is_caught_at_the_first_quarter_mark_and_replaced(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    # DigitalOcean gives 10 s, whatever was asked: the computed expiry is 120 s away.
    cluster_id, account = own_cluster(api, namespace, digitalocean, max_lifetime=10)
    issued = _guarded(api, namespace, cluster_id)
    first_issued, computed_expiry = issued["status"]["issuedAt"], issued["status"]["expiresAt"]
    assert calls(digitalocean, "kubeconfig", account) == 1

    healed = _healed(api, namespace, first_issued, timeout=60)

    # Caught at the first mark (30 s), long before the computed expiry (120 s): exactly one extra
    # kubeconfig call, no other DigitalOcean call (the guard asks the cluster, not DigitalOcean).
    assert healed["status"]["issuedAt"] < computed_expiry
    assert calls(digitalocean, "kubeconfig", account) == 2
    assert calls(digitalocean, "get_cluster", account) == 0
    assert calls(digitalocean, "list_clusters", account) == 0
    assert ("Warning", "CredentialRejected") in events_of(api, namespace, "guarded")
    seconds = _seconds_between(first_issued, healed["status"]["issuedAt"])
    assert 29 <= seconds <= 40, f"replaced {seconds}s after the first credential"


def test_a_revoked_token_is_caught_and_replaced_with_a_working_one(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    cluster_id, account = own_cluster(api, namespace, digitalocean)
    issued = _guarded(api, namespace, cluster_id)
    first_issued = issued["status"]["issuedAt"]
    revoked_raw = kubeconfig_of(api, namespace, "guarded-kubeconfig", "kubeconfig")
    assert digitalocean.revoke(cluster_id=cluster_id) == 1
    revoked_at = time.monotonic()

    healed = _healed(api, namespace, first_issued, timeout=60)
    took = time.monotonic() - revoked_at

    current = kubeconfig_of(api, namespace, "guarded-kubeconfig", "kubeconfig")
    assert current != revoked_raw
    assert whoami(current, tmp_path) == "doks-emulator-admin"
    assert calls(digitalocean, "kubeconfig", account) == 2
    assert calls(digitalocean, "get_cluster", account) == 0
    assert healed["status"]["issuedAt"] < issued["status"]["expiresAt"]
    assert ("Warning", "CredentialRejected") in events_of(api, namespace, "guarded")
    print(f"revocation to a working Secret: {took:.1f}s (guard mark at 30s of {LIFETIME}s)")


def _seconds_between(earlier: str, later: str) -> float:
    start, end = parse_timestamp(earlier), parse_timestamp(later)
    assert start is not None
    assert end is not None
    return (end - start).total_seconds()


# --- clusters that require SSO ------------------------------------------------------------------


def _sso_stalled(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = wait_for_condition(api, namespace, name, "Stalled", "True", "SSORequired")
    ready = condition(obj, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "SSORequired")
    assert "requires SSO" in ready["message"]
    assert obj["status"]["lastFailureReason"] == "SSORequired"
    assert not secret_exists(api, namespace, f"{name}-kubeconfig")
    return obj


def test_an_sso_cluster_whose_api_refuses_tokens_is_stalled_with_sso_required(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id, account = own_cluster(
        api, namespace, digitalocean, sso=True, sso_required=True, sso_refusal="api"
    )
    apply_access(api, namespace, "sso-api", {"clusterID": cluster_id})

    _sso_stalled(api, namespace, "sso-api")

    # The refused call, then one look at the cluster to learn why; nothing minted.
    assert calls(digitalocean, "kubeconfig", account) == 1
    assert calls(digitalocean, "get_cluster", account) == 1
    assert digitalocean.issued_credentials(cluster_id=cluster_id) == []


def test_an_sso_cluster_that_refuses_the_token_itself_is_caught_by_verify(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id, account = own_cluster(
        api, namespace, digitalocean, sso=True, sso_required=True, sso_refusal="cluster"
    )
    apply_access(api, namespace, "sso-cluster", {"clusterID": cluster_id, "verify": True})

    _sso_stalled(api, namespace, "sso-cluster")

    assert calls(digitalocean, "kubeconfig", account) == 1
    assert calls(digitalocean, "get_cluster", account) == 1


def test_a_cluster_name_that_requires_sso_is_refused_from_the_listing(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    _, account = own_cluster(api, namespace, digitalocean, sso=True, sso_required=True)
    apply_access(api, namespace, "sso-named", {"clusterName": "edge"})

    _sso_stalled(api, namespace, "sso-named")

    assert calls(digitalocean, "kubeconfig", account) == 0


# --- 400 and 422 on the kubeconfig call ---------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_request_is_stalled_with_digitaloceans_message_until_asked_again(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, status: int
) -> None:
    cluster_id, account = own_cluster(api, namespace, digitalocean)
    said = "expiry_seconds must be at most 604800"
    refusal = Fault(kind="status", endpoint="kubeconfig", status=status, message=said, count=1)
    added = digitalocean.add_fault(refusal)
    apply_access(api, namespace, "refused", {"clusterID": cluster_id, "expirySeconds": 3600})
    try:
        _refused_then_asked_again(api, namespace, digitalocean, account=account, said=said)
    finally:
        digitalocean.remove_fault(added.id)


def _refused_then_asked_again(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, *, account: str, said: str
) -> None:

    obj = wait_for_condition(api, namespace, "refused", "Stalled", "True", "RequestRefused")
    stalled = condition(obj, "Stalled")
    assert stalled is not None
    assert stalled["message"].endswith(f": {said}")
    assert obj["status"]["lastFailureReason"] == "RequestRefused"
    assert ("Warning", "RenewalFailed") in events_of(api, namespace, "refused")
    # Retried slowly (5 minutes, then longer): nothing more within the next seconds.
    time.sleep(3)
    assert calls(digitalocean, "kubeconfig", account) == 1

    # Someone fixed it on DigitalOcean's side and asks for a credential: tried at once.
    request_refresh(api, namespace, "refused", "fixed-it")

    wait_for_condition(api, namespace, "refused", "Ready", "True", "Issued")
    assert calls(digitalocean, "kubeconfig", account) == 2


def test_a_spec_change_retries_a_refused_request_at_once(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id, account = own_cluster(api, namespace, digitalocean)
    fault = Fault(kind="status", endpoint="kubeconfig", status=422, count=1)
    added = digitalocean.add_fault(fault)
    try:
        apply_access(api, namespace, "respec", {"clusterID": cluster_id, "expirySeconds": 7200})
        wait_for_condition(api, namespace, "respec", "Stalled", "True", "RequestRefused")

        patch_access(api, namespace, "respec", {"spec": {"expirySeconds": 3600}})

        wait_for_condition(api, namespace, "respec", "Ready", "True", "Issued")
        assert calls(digitalocean, "kubeconfig", account) == 2
    finally:
        digitalocean.remove_fault(added.id)
