"""DOClusterAccessSet: one credential for every DigitalOcean cluster a selector matches.

Every test has a DigitalOcean account of its own in the emulator (its clusters and token), so
that it can create, delete, rename and retag clusters under the running operator and count the
calls it caused. A listing is forced with the refresh annotation, except where the test is about
the resync interval itself.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.state import KUBERNETES_ACCESS_CLUSTER, Cluster
from tests import kube
from tests.e2e.objects import (
    EMULATOR_USER,
    GROUP,
    PLURAL,
    VERSION,
    create_token_secret,
    get_access,
    patch_access,
    whoami,
)
from tests.running_operator import OperatorRunner

pytestmark = pytest.mark.usefixtures("operator")

SETS = "doclusteraccesssets"


# -- helpers -----------------------------------------------------------------------------------


def account_of(namespace: str, digitalocean: Emulator, api: client.ApiClient) -> str:
    """An account and token of the test's own; the token Secret created. Returns the account."""
    account = f"fleet-{namespace}"
    token = digitalocean.add_token(account=account).token
    create_token_secret(api, namespace, token=token)
    return account


def apply_set(
    api: client.ApiClient,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    *,
    token_source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a set; its token comes from the test's token Secret unless ``token_source`` says
    otherwise (``{"accountRef": ...}``)."""
    source = token_source or {"tokenSecretRef": {"name": "digitalocean-api"}}
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DOClusterAccessSet",
        "metadata": {"name": name},
        "spec": {**source, **spec},
    }
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, body
    )
    return created


def get_set(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, name
    )
    return found


def patch_set(api: client.ApiClient, namespace: str, name: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, name, body
    )


def resync(api: client.ApiClient, namespace: str, name: str) -> None:
    """Ask for a listing now (the refresh annotation, with a new value each time)."""
    annotations = {"doks-access.dev/refresh-requested-at": f"{time.time():.6f}"}
    patch_set(api, namespace, name, {"metadata": {"annotations": annotations}})


def set_condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


def wait_for_set(
    api: client.ApiClient,
    namespace: str,
    name: str,
    kind: str,
    status: str,
    reason: str | None = None,
    *,
    timeout: float = 60,
    **counts: int,
) -> dict[str, Any]:
    """The set once condition ``kind`` has ``status`` (and ``reason``) and its counts match."""

    def matches() -> dict[str, Any] | None:
        obj = get_set(api, namespace, name)
        found = set_condition(obj, kind)
        shown = obj.get("status") or {}
        if (
            found
            and found["status"] == status
            and reason in (None, found["reason"])
            and all(shown.get(key) == value for key, value in counts.items())
        ):
            return obj
        return None

    return kube.eventually(
        matches, what=f"set {name} {kind}={status} ({reason}) {counts}", timeout=timeout
    )


def children_of(api: client.ApiClient, namespace: str, set_name: str) -> dict[str, dict[str, Any]]:
    """The set's children by cluster ID."""
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"doks-access.dev/set={set_name}"
    )
    return {
        item["metadata"]["labels"]["doks-access.dev/cluster-id"]: item for item in listed["items"]
    }


def child_uids(api: client.ApiClient, namespace: str, set_name: str) -> dict[str, str]:
    """The UID of the set's child for each cluster ID: which objects, not just which names."""
    return {
        cluster_id: child["metadata"]["uid"]
        for cluster_id, child in children_of(api, namespace, set_name).items()
    }


def secret_names(api: client.ApiClient, namespace: str) -> set[str]:
    listed = client.CoreV1Api(api).list_namespaced_secret(
        namespace, label_selector="app.kubernetes.io/managed-by=doks-access-operator"
    )
    return {item.metadata.name for item in listed.items}


def read_secret(api: client.ApiClient, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def kubeconfig_in(api: client.ApiClient, namespace: str, name: str) -> bytes:
    secret = read_secret(api, namespace, name)
    assert secret is not None, f"Secret {name} is missing"
    return base64.b64decode(secret.data["kubeconfig"])


def event_reasons(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    listed = client.CoreV1Api(api).list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.name={name},involvedObject.kind=DOClusterAccessSet",
    )
    return [event.reason for event in listed.items]


# -- the tests ---------------------------------------------------------------------------------


def test_a_tag_selector_over_three_pages_creates_exactly_the_matching_children(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    account = account_of(namespace, digitalocean, api)
    clusters = digitalocean.add_clusters(
        Cluster(
            name=f"c-{number:03}",
            account=account,
            region="fra1" if number % 2 else "nyc1",
            # Every 25th is production (spread over all three pages); some others are staging.
            tags=("env:prod",) if number % 25 == 7 else ("env:staging",) if number % 5 else (),
        )
        for number in range(450)
    )
    wanted = {c.id for c in clusters if "env:prod" in c.tags}
    assert len(wanted) == 18

    apply_set(api, namespace, "prod", {"selector": {"tags": ["env:prod"]}})

    obj = wait_for_set(api, namespace, "prod", "Ready", "True", "AllReady", matched=18, ready=18)
    # 450 clusters at 200 a page; and one kubeconfig call per selected cluster, none other.
    assert digitalocean.request_count("list_clusters", account=account) == 3
    assert digitalocean.request_count("kubeconfig", account=account) == 18
    children = children_of(api, namespace, "prod")
    assert set(children) == wanted
    for cluster_id, child in children.items():
        assert child["spec"]["clusterID"] == cluster_id
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "DOClusterAccessSet",
            obj["metadata"]["uid"],
            True,
        )
        secret = child["status"]["secretName"]
        assert whoami(kubeconfig_in(api, namespace, secret), tmp_path) == EMULATOR_USER
    assert obj["status"]["pending"] == 0
    assert len(obj["status"]["clusters"]) == 18
    assert event_reasons(api, namespace, "prod").count("ClusterAdded") == 18


def test_clusters_created_and_deleted_in_digitalocean_follow_within_one_resync(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    first = digitalocean.add_cluster(Cluster(name="web-1", account=account))
    apply_set(api, namespace, "web", {"selector": {"namePattern": "web-*"}, "resyncInterval": "1m"})
    wait_for_set(api, namespace, "web", "Ready", "True", matched=1, ready=1)

    second = digitalocean.add_cluster(Cluster(name="web-2", account=account))
    digitalocean.add_cluster(Cluster(name="db-1", account=account))  # not selected
    digitalocean.remove_cluster(first.id)
    old_secret = children_of(api, namespace, "web")[first.id]["status"]["secretName"]

    # No refresh request: the resync interval (1 minute) brings the news.
    def listed() -> list[str] | None:
        entries = get_set(api, namespace, "web")["status"]["clusters"]
        ids = [entry["id"] for entry in entries if entry["state"] == "Ready"]
        return ids if ids == [second.id] else None

    kube.eventually(listed, what="the new cluster in and the deleted one out", timeout=100)
    assert set(children_of(api, namespace, "web")) == {second.id}
    kube.eventually(
        lambda: read_secret(api, namespace, old_secret) is None,
        what="the deleted cluster's Secret to be garbage-collected",
    )
    assert "ClusterRemoved" in event_reasons(api, namespace, "web")


def test_orphan_keeps_the_secret_of_a_cluster_that_is_gone(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    gone = digitalocean.add_cluster(Cluster(name="edge-1", account=account, tags=("edge",)))
    apply_set(api, namespace, "edge", {"selector": {"tags": ["edge"]}, "deletionPolicy": "Orphan"})
    wait_for_set(api, namespace, "edge", "Ready", "True", matched=1, ready=1)
    child = children_of(api, namespace, "edge")[gone.id]
    secret = child["status"]["secretName"]

    digitalocean.remove_cluster(gone.id)
    resync(api, namespace, "edge")

    wait_for_set(api, namespace, "edge", "Ready", "True", matched=0, ready=0)
    kube.eventually(lambda: not children_of(api, namespace, "edge"), what="the child to be removed")

    def released() -> bool:
        kept = read_secret(api, namespace, secret)
        assert kept is not None, "the Secret was deleted under Orphan"
        return not kept.metadata.owner_references

    kube.eventually(released, what="the Secret to be released by the garbage collector")


def test_retagging_moves_a_cluster_in_and_out(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    mover = digitalocean.add_cluster(Cluster(name="mover", account=account, tags=("team:a",)))
    apply_set(api, namespace, "team-b", {"selector": {"tags": ["team:b"]}})
    wait_for_set(api, namespace, "team-b", "Ready", "True", matched=0)

    digitalocean.update_cluster(mover.id, tags=("team:b",))
    resync(api, namespace, "team-b")
    wait_for_set(api, namespace, "team-b", "Ready", "True", matched=1, ready=1)
    assert set(children_of(api, namespace, "team-b")) == {mover.id}

    digitalocean.update_cluster(mover.id, tags=("team:c",))
    resync(api, namespace, "team-b")
    wait_for_set(api, namespace, "team-b", "Ready", "True", matched=0)
    kube.eventually(
        lambda: not children_of(api, namespace, "team-b"), what="the child to be removed"
    )


def test_a_renamed_cluster_keeps_a_valid_secret_at_every_moment(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, tmp_path: Path
) -> None:
    account = account_of(namespace, digitalocean, api)
    renamed = digitalocean.add_cluster(Cluster(name="old-name", account=account, tags=("r",)))
    apply_set(
        api,
        namespace,
        "named",
        {
            "selector": {"tags": ["r"]},
            "template": {"spec": {"target": {"name": "$(cluster.name)-kubeconfig"}}},
        },
    )
    wait_for_set(api, namespace, "named", "Ready", "True", matched=1, ready=1)
    child_name = children_of(api, namespace, "named")[renamed.id]["metadata"]["name"]

    digitalocean.update_cluster(renamed.id, name="new-name")
    resync(api, namespace, "named")

    def moved() -> bool:
        present = secret_names(api, namespace) & {"old-name-kubeconfig", "new-name-kubeconfig"}
        assert present, "neither the old nor the new Secret exists: a credential gap"
        return present == {"new-name-kubeconfig"}

    kube.eventually(moved, what="the Secret to move to the new name")
    child = children_of(api, namespace, "named")[renamed.id]
    assert child["metadata"]["name"] == child_name  # keyed by ID: the same child
    assert whoami(kubeconfig_in(api, namespace, "new-name-kubeconfig"), tmp_path) == EMULATOR_USER


def test_colliding_target_names_are_reported_and_nothing_is_overwritten(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    one = digitalocean.add_cluster(Cluster(name="a", account=account, region="ams3", tags=("c",)))
    apply_set(
        api,
        namespace,
        "by-region",
        {
            "selector": {"tags": ["c"]},
            "template": {"spec": {"target": {"name": "$(cluster.region)-kubeconfig"}}},
        },
    )
    wait_for_set(api, namespace, "by-region", "Ready", "True", matched=1, ready=1)
    before = kubeconfig_in(api, namespace, "ams3-kubeconfig")
    fetched = len(digitalocean.issued_credentials(cluster_id=one.id))

    two = digitalocean.add_cluster(Cluster(name="b", account=account, region="ams3", tags=("c",)))
    resync(api, namespace, "by-region")

    obj = wait_for_set(api, namespace, "by-region", "Stalled", "True", "Collision")
    assert two.id in set_condition(obj, "Stalled")["message"]  # type: ignore[index]
    assert set(children_of(api, namespace, "by-region")) == {one.id}  # no child for the newcomer
    assert kubeconfig_in(api, namespace, "ams3-kubeconfig") == before
    assert len(digitalocean.issued_credentials(cluster_id=one.id)) == fetched
    assert not digitalocean.issued_credentials(cluster_id=two.id)
    kube.eventually(
        lambda: "Collision" in event_reasons(api, namespace, "by-region"),
        what="a Collision event",
    )


def test_a_pending_cluster_gets_its_credential_once_it_runs(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    new = digitalocean.add_cluster(
        Cluster(name="fresh", account=account, tags=("p",), status="provisioning")
    )
    apply_set(api, namespace, "pending", {"selector": {"tags": ["p"]}})
    obj = wait_for_set(
        api, namespace, "pending", "Reconciling", "True", "ClustersPending", matched=1, pending=1
    )
    assert obj["status"]["clusters"][0]["state"] == "Pending"
    assert not children_of(api, namespace, "pending")

    digitalocean.update_cluster(new.id, status="running")
    resync(api, namespace, "pending")

    wait_for_set(api, namespace, "pending", "Ready", "True", matched=1, ready=1, pending=0)


def test_a_hand_edited_child_is_put_back_and_a_deleted_one_recreated(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    cluster = digitalocean.add_cluster(Cluster(name="kept", account=account, tags=("k",)))
    apply_set(
        api,
        namespace,
        "kept",
        {"selector": {"tags": ["k"]}, "template": {"spec": {"expirySeconds": 3600}}},
    )
    wait_for_set(api, namespace, "kept", "Ready", "True", matched=1, ready=1)
    name = children_of(api, namespace, "kept")[cluster.id]["metadata"]["name"]

    patch_access(api, namespace, name, {"spec": {"expirySeconds": 600, "suspend": True}})
    kube.eventually(
        lambda: (
            get_access(api, namespace, name)["spec"].get("expirySeconds") == 3600
            and not get_access(api, namespace, name)["spec"].get("suspend")
        ),
        what="the hand edit to be put back",
    )

    uid = get_access(api, namespace, name)["metadata"]["uid"]
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    kube.eventually(
        lambda: (
            get_access(api, namespace, name)["metadata"]["uid"] != uid
            if not kube.is_absent(lambda: get_access(api, namespace, name))
            else None
        ),
        what="the deleted child to be recreated",
    )
    wait_for_set(api, namespace, "kept", "Ready", "True", matched=1, ready=1)


def test_a_restart_costs_no_kubeconfig_call_and_deleting_the_set_removes_its_children(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, operator: OperatorRunner
) -> None:
    account = account_of(namespace, digitalocean, api)
    clusters = digitalocean.add_clusters(
        Cluster(name=f"r-{n}", account=account, tags=("restart",)) for n in range(5)
    )
    apply_set(api, namespace, "restart", {"selector": {"tags": ["restart"]}})
    synced = wait_for_set(api, namespace, "restart", "Ready", "True", matched=5, ready=5)
    fetched = sum(len(digitalocean.issued_credentials(cluster_id=c.id)) for c in clusters)
    assert fetched == 5

    operator.restart()
    resync(api, namespace, "restart")  # the new operator lists and plans again
    kube.eventually(
        lambda: (
            get_set(api, namespace, "restart")["status"]["lastSyncTime"]
            > synced["status"]["lastSyncTime"]
        ),
        what="the restarted operator to list the clusters again",
        timeout=90,
    )
    wait_for_set(api, namespace, "restart", "Ready", "True", matched=5, ready=5)
    assert sum(len(digitalocean.issued_credentials(cluster_id=c.id)) for c in clusters) == 5

    secrets = secret_names(api, namespace)
    assert len(secrets) == 5
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, SETS, "restart"
    )
    kube.eventually(
        lambda: not children_of(api, namespace, "restart") and not secret_names(api, namespace),
        what="the children and their Secrets to be garbage-collected",
    )


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        ({"selector": {"namePattern": "web-[ab"}}, "InvalidSpec", "never closed"),
        (
            {
                "selector": {"namePattern": "*"},
                "template": {"spec": {"target": {"name": "Cluster-$(cluster.name)"}}},
            },
            "InvalidSpec",
            "spec.template.spec.target.name",
        ),
        (
            {
                "selector": {"namePattern": "*"},
                "template": {"spec": {"target": {"name": "$(cluster.nickname)"}}},
            },
            "InvalidSpec",
            "unknown placeholder",
        ),
    ],
    ids=["unclosed-pattern", "invalid-secret-name", "unknown-placeholder"],
)
def test_a_bad_set_gets_a_stalled_condition_and_an_event(
    api: client.ApiClient,
    namespace: str,
    digitalocean: Emulator,
    spec: dict[str, Any],
    reason: str,
    words: str,
) -> None:
    account_of(namespace, digitalocean, api)
    apply_set(api, namespace, "bad", spec)

    obj = wait_for_set(api, namespace, "bad", "Stalled", "True", reason)

    assert words in set_condition(obj, "Stalled")["message"]  # type: ignore[index]
    kube.eventually(
        lambda: reason in event_reasons(api, namespace, "bad"), what=f"a {reason} event"
    )


def test_a_cluster_whose_name_renders_an_invalid_secret_is_refused_alone(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    good = digitalocean.add_cluster(Cluster(name="good", account=account, tags=("n",)))
    odd = digitalocean.add_cluster(Cluster(name="Odd_Name", account=account, tags=("n",)))
    apply_set(
        api,
        namespace,
        "names",
        {
            "selector": {"tags": ["n"]},
            "template": {"spec": {"target": {"name": "$(cluster.name)-kubeconfig"}}},
        },
    )

    obj = wait_for_set(api, namespace, "names", "Stalled", "True", "InvalidTemplate", matched=2)
    assert odd.id in set_condition(obj, "Stalled")["message"]  # type: ignore[index]
    assert set(children_of(api, namespace, "names")) == {good.id}
    kube.eventually(
        lambda: "Invalid" in event_reasons(api, namespace, "names"), what="an Invalid event"
    )


def test_a_cluster_that_requires_sso_gets_no_child_and_stalls_the_set(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    plain = digitalocean.add_cluster(Cluster(name="plain", account=account, tags=("s",)))
    sso = digitalocean.add_cluster(
        Cluster(name="sso-only", account=account, tags=("s",), sso=True, sso_required=True)
    )
    apply_set(api, namespace, "sso", {"selector": {"tags": ["s"]}})

    obj = wait_for_set(api, namespace, "sso", "Stalled", "True", "SSORequired", matched=2, ready=1)

    states = {entry["id"]: entry["state"] for entry in obj["status"]["clusters"]}
    assert states == {plain.id: "Ready", sso.id: "SSORequired"}
    assert set(children_of(api, namespace, "sso")) == {plain.id}
    # The listing said so: no credential was asked for the SSO cluster.
    assert len(digitalocean.issued_credentials(cluster_id=sso.id)) == 0
    assert digitalocean.request_count("kubeconfig", account=account) == 1
    kube.eventually(
        lambda: "SSORequired" in event_reasons(api, namespace, "sso"), what="an SSORequired event"
    )


def test_a_token_that_cannot_list_clusters_stalls_unauthorized(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = f"fleet-{namespace}"
    token = digitalocean.add_token(
        account=account, scopes=frozenset({KUBERNETES_ACCESS_CLUSTER})
    ).token
    create_token_secret(api, namespace, token=token)
    apply_set(api, namespace, "no-read", {"selector": {"namePattern": "*"}})

    obj = wait_for_set(api, namespace, "no-read", "Stalled", "True", "Unauthorized")

    assert "kubernetes:read" in set_condition(obj, "Stalled")["message"]  # type: ignore[index]


def test_a_token_that_cannot_read_tags_stalls_when_selecting_by_tag(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = f"fleet-{namespace}"
    token = digitalocean.add_token(
        account=account, scopes=frozenset({"kubernetes:read", KUBERNETES_ACCESS_CLUSTER})
    ).token
    digitalocean.add_cluster(Cluster(name="tagged", account=account, tags=("t",)))
    create_token_secret(api, namespace, token=token)
    apply_set(api, namespace, "blind", {"selector": {"tags": ["t"]}})

    obj = wait_for_set(api, namespace, "blind", "Stalled", "True", "TagsNotVisible")

    assert "tag:read" in set_condition(obj, "Stalled")["message"]  # type: ignore[index]
    assert not children_of(api, namespace, "blind")


def test_an_empty_selector_is_refused_at_admission(api: client.ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as refused:
        apply_set(api, namespace, "everything", {"selector": {}})

    assert refused.value.status == 422
    assert "empty selector" in str(refused.value.body)


def test_children_that_cannot_fetch_stall_the_set_with_their_reason(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    # The token lists clusters and reads tags, but may not fetch credentials.
    account = f"fleet-{namespace}"
    token = digitalocean.add_token(account=account, scopes=frozenset({"kubernetes:read"})).token
    create_token_secret(api, namespace, token=token)
    digitalocean.add_cluster(Cluster(name="locked", account=account))
    apply_set(api, namespace, "locked", {"selector": {"namePattern": "locked"}})

    obj = wait_for_set(api, namespace, "locked", "Stalled", "True", "ChildrenStalled", matched=1)

    assert obj["status"]["clusters"][0]["state"] == "Stalled"
    assert set_condition(obj, "Ready")["status"] == "False"  # type: ignore[index]


def test_sets_sharing_a_token_share_one_listing(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    digitalocean.add_clusters(
        Cluster(name=f"{team}-{n}", account=account, tags=(team,))
        for team in ("blue", "green")
        for n in range(3)
    )

    apply_set(api, namespace, "blue", {"selector": {"tags": ["blue"]}})
    apply_set(api, namespace, "green", {"selector": {"tags": ["green"]}})

    blue = wait_for_set(api, namespace, "blue", "Ready", "True", matched=3, ready=3)
    green = wait_for_set(api, namespace, "green", "Ready", "True", matched=3, ready=3)
    assert digitalocean.request_count("list_clusters", account=account) == 1  # one page, once
    assert blue["status"]["lastSyncTime"] == green["status"]["lastSyncTime"]


def test_while_a_cluster_is_pending_the_set_lists_every_minute(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    new = digitalocean.add_cluster(
        Cluster(name="slow", account=account, tags=("s",), status="provisioning")
    )
    apply_set(api, namespace, "slow", {"selector": {"tags": ["s"]}, "resyncInterval": "1h"})
    wait_for_set(api, namespace, "slow", "Reconciling", "True", "ClustersPending", pending=1)

    digitalocean.update_cluster(new.id, status="running")

    # No refresh request, and an interval of an hour: the minute's listing finds it running.
    wait_for_set(api, namespace, "slow", "Ready", "True", timeout=100, matched=1, ready=1)
    assert digitalocean.request_count("list_clusters", account=account) == 2


def test_kubectl_get_shows_the_counts(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    account = account_of(namespace, digitalocean, api)
    digitalocean.add_clusters(
        [
            Cluster(name="up", account=account, tags=("g",)),
            Cluster(name="coming", account=account, tags=("g",), status="provisioning"),
        ]
    )
    apply_set(api, namespace, "shown", {"selector": {"tags": ["g"]}})
    wait_for_set(api, namespace, "shown", "Ready", "True", matched=2, ready=1, pending=1)

    # What `kubectl get docas` prints: the server's Table rendering of the printer columns.
    method, url, headers, _body, _files = api.param_serialize(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{SETS}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers)
    response.read()
    table = json.loads(response.data)
    columns = [column["name"] for column in table["columnDefinitions"]]
    (row,) = table["rows"]
    shown = dict(zip(columns, row["cells"], strict=True))
    assert columns == ["Name", "Ready", "Matched", "Ready Children", "Pending", "Age"]
    assert (shown["Ready"], shown["Matched"], shown["Ready Children"], shown["Pending"]) == (
        "True",
        2,
        1,
        1,
    )


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, endpoint="list_clusters"),
        Fault(kind="body", body="<html>Bad gateway</html>", endpoint="list_clusters"),
        Fault(
            kind="body",
            body='{"kubernetes_clusters": [], "links": {}, "meta": {"total": 9}}',
            endpoint="list_clusters",
        ),
    ],
    ids=["503", "malformed", "short-page"],
)
def test_a_failed_listing_changes_no_child(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, fault: Fault
) -> None:
    account = account_of(namespace, digitalocean, api)
    digitalocean.add_clusters(
        Cluster(name=f"steady-{n}", account=account, tags=("steady",)) for n in range(2)
    )
    apply_set(api, namespace, "steady", {"selector": {"tags": ["steady"]}})
    wait_for_set(api, namespace, "steady", "Ready", "True", matched=2, ready=2)
    before = child_uids(api, namespace, "steady")

    added = digitalocean.add_fault(fault)
    try:
        resync(api, namespace, "steady")
        obj = wait_for_set(api, namespace, "steady", "Reconciling", "True", "ListFailed")
        assert set_condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
        assert obj["status"]["matched"] == 2
        after = child_uids(api, namespace, "steady")
        assert after == before
    finally:
        digitalocean.remove_fault(added.id)
    resync(api, namespace, "steady")
    kube.eventually(
        lambda: set_condition(get_set(api, namespace, "steady"), "Reconciling") is None,
        what="the next listing to succeed",
    )
    wait_for_set(api, namespace, "steady", "Ready", "True", matched=2, ready=2)
