"""End to end: a ClusterDOAccount serves the namespaces and clusters its rules allow, and refuses
everything else before any DigitalOcean call, saying which rule."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.emulator.state import Cluster as EmulatedCluster
from tests import kube
from tests.e2e.objects import (
    GROUP,
    VERSION,
    apply_access,
    condition,
    create_token_secret,
    events_of,
    fetches_for,
    get_access,
    kubeconfig_of,
    request_refresh,
    wait_for_condition,
)
from tests.e2e.test_fleet import apply_set, children_of, wait_for_set
from tests.running_operator import ACCOUNT_NAMESPACE

pytestmark = pytest.mark.usefixtures("operator")

ACCOUNTS = "clusterdoaccounts"


def _apply_account(api: client.ApiClient, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterDOAccount",
        "metadata": {"name": name},
        "spec": spec,
    }
    objects = client.CustomObjectsApi(api)
    if kube.is_absent(lambda: objects.get_cluster_custom_object(GROUP, VERSION, ACCOUNTS, name)):
        objects.create_cluster_custom_object(GROUP, VERSION, ACCOUNTS, body)
    else:
        objects.patch_cluster_custom_object(GROUP, VERSION, ACCOUNTS, name, {"spec": spec})


@pytest.fixture
def account(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> Iterator[dict[str, Any]]:
    """A ClusterDOAccount of a DigitalOcean account of the test's own, with two clusters, whose
    token Secret is in the account namespace; it admits ``namespace`` for the first cluster."""
    core = client.CoreV1Api(api)
    if kube.is_absent(lambda: core.read_namespace(ACCOUNT_NAMESPACE)):
        meta = client.V1ObjectMeta(name=ACCOUNT_NAMESPACE)
        core.create_namespace(client.V1Namespace(metadata=meta))
    owner = f"tenancy-{namespace}"
    token = digitalocean.add_token(account=owner).token
    allowed = digitalocean.add_cluster(EmulatedCluster(name="team-a", account=owner, tags=("t",)))
    other = digitalocean.add_cluster(EmulatedCluster(name="team-b", account=owner, tags=("t",)))
    secret = f"do-{namespace}"
    create_token_secret(api, ACCOUNT_NAMESPACE, token=token, name=secret)
    name = f"shared-{uuid.uuid4().hex[:8]}"
    spec = {
        "tokenSecretRef": {"name": secret},
        "tenants": [{"namespaces": [namespace], "clusters": {"ids": [allowed.id]}}],
        "maxExpirySeconds": 7200,
    }
    _apply_account(api, name, spec)
    try:
        yield {"name": name, "spec": spec, "allowed": allowed.id, "other": other.id}
    finally:
        objects = client.CustomObjectsApi(api)
        kube.delete_ignoring_absence(
            lambda: objects.delete_cluster_custom_object(GROUP, VERSION, ACCOUNTS, name)
        )
        kube.delete_ignoring_absence(
            lambda: core.delete_namespaced_secret(secret, ACCOUNT_NAMESPACE)
        )


def _via(account: dict[str, Any], cluster: str, **spec: Any) -> dict[str, Any]:
    return {"clusterID": cluster, "accountRef": {"name": account["name"]}, **spec}


def _stalled(api: client.ApiClient, namespace: str, name: str, reason: str) -> str:
    obj = wait_for_condition(api, namespace, name, "Stalled", "True", reason)
    stalled = condition(obj, "Stalled")
    assert stalled is not None
    return str(stalled["message"])


def test_an_allowed_request_gets_its_credential_and_the_tenant_holds_no_token(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    apply_access(api, namespace, "allowed", _via(account, account["allowed"], expirySeconds=3600))

    wait_for_condition(api, namespace, "allowed", "Ready", "True", "Issued")

    assert kubeconfig_of(api, namespace, "allowed-kubeconfig", "kubeconfig")
    assert fetches_for(digitalocean, account["allowed"]) == 1
    secrets = client.CoreV1Api(api).list_namespaced_secret(namespace).items
    assert [s.metadata.name for s in secrets] == ["allowed-kubeconfig"]


@pytest.mark.parametrize(
    ("which", "spec", "reason", "said"),
    [
        ("other", {"expirySeconds": 3600}, "ClusterNotAllowed", "granted by none of the rules"),
        ("allowed", {"expirySeconds": 86400}, "ExpiryTooLong", "allows at most 7200s"),
        ("allowed", {}, "ExpiryTooLong", "this asks for 604800s"),
    ],
)
def test_a_request_outside_the_policy_is_refused_without_a_digitalocean_call(
    api: client.ApiClient,
    namespace: str,
    digitalocean: Emulator,
    account: dict[str, Any],
    which: str,
    spec: dict[str, Any],
    reason: str,
    said: str,
) -> None:
    before = digitalocean.request_count(account=f"tenancy-{namespace}")
    apply_access(api, namespace, "refused", _via(account, account[which], **spec))

    message = _stalled(api, namespace, "refused", reason)

    assert said in message
    assert digitalocean.request_count(account=f"tenancy-{namespace}") == before


def test_a_namespace_no_rule_admits_is_refused_naming_the_account(
    api: client.ApiClient, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    with kube.fresh_namespace(api) as stranger:
        apply_access(api, stranger, "stranger", _via(account, account["allowed"]))

        message = _stalled(api, stranger, "stranger", "NamespaceNotAllowed")

    assert f"no rule of ClusterDOAccount {account['name']} admits namespace {stranger}" in message
    assert fetches_for(digitalocean, account["allowed"]) == 0


def test_a_missing_account_is_stalled(api: client.ApiClient, namespace: str) -> None:
    apply_access(
        api, namespace, "orphan", {"clusterID": str(uuid.uuid4()), "accountRef": {"name": "nope"}}
    )

    assert "ClusterDOAccount nope does not exist" in _stalled(
        api, namespace, "orphan", "AccountNotFound"
    )


def _is_ready(obj: dict[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return ready is not None and ready["status"] == "True"


def _narrowed(account: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The account's spec with ``namespace`` granted only the other cluster."""
    tenants = [{"namespaces": [namespace], "clusters": {"ids": [account["other"]]}}]
    return {**account["spec"], "tenants": tenants}


def test_a_permission_taken_away_stops_renewals_at_once_and_given_back_resumes_them(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    apply_access(api, namespace, "revoked", _via(account, account["allowed"], expirySeconds=3600))
    ready = wait_for_condition(api, namespace, "revoked", "Ready", "True", "Issued")
    issued_at = ready["status"]["issuedAt"]

    # No fetch is due for most of an hour: the account's watch event alone must tell.
    _apply_account(api, account["name"], _narrowed(account, namespace))

    message = _stalled(api, namespace, "revoked", "ClusterNotAllowed")
    assert "granted by none of the rules" in message
    assert "renewals stop" in message
    obj = get_access(api, namespace, "revoked")
    # The credential already written stays until it expires (the safe default): still Ready.
    assert _is_ready(obj)
    assert obj["status"]["issuedAt"] == issued_at
    assert "lastFailureReason" not in obj["status"]  # nothing was fetched, so nothing failed
    assert ("Warning", "RenewalsStopped") in events_of(api, namespace, "revoked")

    _apply_account(api, account["name"], account["spec"])

    def stall_lifted() -> dict[str, Any] | None:
        found = get_access(api, namespace, "revoked")
        return None if condition(found, "Stalled") else found

    lifted = kube.eventually(stall_lifted, what="the Stalled condition to go", timeout=60)
    assert _is_ready(lifted)
    assert lifted["status"]["issuedAt"] == issued_at
    assert fetches_for(digitalocean, account["allowed"]) == 1


def test_a_refresh_the_account_refused_is_served_as_soon_as_the_permission_is_back(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    apply_access(api, namespace, "asked", _via(account, account["allowed"], expirySeconds=3600))
    wait_for_condition(api, namespace, "asked", "Ready", "True", "Issued")
    _apply_account(api, account["name"], _narrowed(account, namespace))
    _stalled(api, namespace, "asked", "ClusterNotAllowed")

    request_refresh(api, namespace, "asked", "while-refused")

    def refused() -> dict[str, Any] | None:
        found = get_access(api, namespace, "asked")
        return found if found["status"].get("lastFailureReason") == "ClusterNotAllowed" else None

    kube.eventually(refused, what="the refresh to be refused", timeout=60)
    assert fetches_for(digitalocean, account["allowed"]) == 1

    # The refusal waits minutes for its retry; a change of the account retries it at once.
    _apply_account(api, account["name"], account["spec"])

    def renewed() -> dict[str, Any] | None:
        found = get_access(api, namespace, "asked")
        return (
            None if condition(found, "Stalled") or found["status"].get("failedAttempts") else found
        )

    kube.eventually(renewed, what="the refresh to be served", timeout=60)
    assert fetches_for(digitalocean, account["allowed"]) == 2


def test_a_set_through_an_account_gets_only_the_granted_clusters(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    apply_set(
        api,
        namespace,
        "fleet",
        {"selector": {"tags": ["t"]}, "template": {"spec": {"expirySeconds": 3600}}},
        token_source={"accountRef": {"name": account["name"]}},
    )

    wait_for_set(api, namespace, "fleet", "Stalled", "True", "ChildrenStalled", matched=2, ready=1)
    children = children_of(api, namespace, "fleet")
    assert {c["spec"]["accountRef"]["name"] for c in children.values()} == {account["name"]}
    assert not any("tokenSecretRef" in c["spec"] for c in children.values())
    refused = children[account["other"]]["metadata"]["name"]
    assert "granted by none of the rules" in _stalled(api, namespace, refused, "ClusterNotAllowed")
    assert fetches_for(digitalocean, account["allowed"]) == 1
    assert fetches_for(digitalocean, account["other"]) == 0


def test_a_set_in_a_namespace_the_account_does_not_admit_lists_nothing(
    api: client.ApiClient, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    owner = account["name"]
    with kube.fresh_namespace(api) as stranger:
        apply_set(
            api,
            stranger,
            "fleet",
            {"selector": {"tags": ["t"]}},
            token_source={"accountRef": {"name": owner}},
        )

        obj = wait_for_set(api, stranger, "fleet", "Stalled", "True", "NamespaceNotAllowed")

    assert f"admits namespace {stranger}" in str(obj["status"]["conditions"])
    assert fetches_for(digitalocean, account["allowed"]) == 0


def test_a_set_whose_namespace_the_account_stops_admitting_says_so_at_once(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, account: dict[str, Any]
) -> None:
    apply_set(
        api,
        namespace,
        "fleet",
        # No child (whose own refusal would wake the set), and listed again only every 6 hours:
        # the account's watch event alone must tell.
        {"selector": {"clusterNames": ["no-such-cluster"]}, "resyncInterval": "6h"},
        token_source={"accountRef": {"name": account["name"]}},
    )
    wait_for_set(api, namespace, "fleet", "Ready", "True", matched=0)
    listings = digitalocean.request_count(account=f"tenancy-{namespace}")
    elsewhere = {**account["spec"], "tenants": [{"namespaces": ["someone-else"]}]}
    elsewhere["tenants"][0]["clusters"] = {"all": True}

    _apply_account(api, account["name"], elsewhere)

    obj = wait_for_set(api, namespace, "fleet", "Stalled", "True", "NamespaceNotAllowed")
    assert f"admits namespace {namespace}" in str(obj["status"]["conditions"])
    assert digitalocean.request_count(account=f"tenancy-{namespace}") == listings
