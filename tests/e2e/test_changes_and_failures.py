"""End to end: what triggers a new credential, and how every kind of failure is reported."""

from __future__ import annotations

import base64
import datetime
import time
from pathlib import Path

import pytest
from kubernetes import client

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
    patch_access,
    request_refresh,
    solo_cluster,
    wait_for_condition,
    whoami,
)

pytestmark = pytest.mark.usefixtures("operator")


def _credential(api: client.ApiClient, namespace: str, name: str) -> bytes:
    return kubeconfig_of(api, namespace, f"{name}-kubeconfig", "kubeconfig")


def _reissued(api: client.ApiClient, namespace: str, name: str, before: bytes) -> bytes:
    # Compares the credential itself: issuedAt has whole seconds, and two fetches can share one.
    return kube.eventually(
        lambda: (current := _credential(api, namespace, name)) != before and current,
        what=f"a new credential for {name}",
        timeout=30,
    )


def _ready(api: client.ApiClient, namespace: str, name: str, spec: dict[str, object]) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, name, {"clusterID": CLUSTER_ID, "expirySeconds": 3600, **spec})
    wait_for_condition(api, namespace, name, "Ready", "True", "Issued")


def test_a_credential_shaping_spec_change_fetches_at_once(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id = solo_cluster(api, namespace, digitalocean)
    apply_access(api, namespace, "reshaped", {"clusterID": cluster_id, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "reshaped", "Ready", "True", "Issued")
    before = _credential(api, namespace, "reshaped")

    patch_access(api, namespace, "reshaped", {"spec": {"expirySeconds": 7200}})

    _reissued(api, namespace, "reshaped", before)
    obj = wait_for_condition(api, namespace, "reshaped", "Ready", "True", "Issued")
    assert obj["status"]["observedGeneration"] == 2
    secret = client.CoreV1Api(api).read_namespaced_secret("reshaped-kubeconfig", namespace)
    annotations = secret.metadata.annotations
    issued = annotations["doks-access.dev/issued-at"]
    assert issued == obj["status"]["issuedAt"].replace("+00:00", "Z")
    first, second = digitalocean.issued_credentials(cluster_id=cluster_id)
    assert first.expires_at - first.issued_at == pytest.approx(3600, abs=1)
    assert second.expires_at - second.issued_at == pytest.approx(7200, abs=1)


def test_a_label_change_is_applied_without_a_new_credential(
    api: client.ApiClient, namespace: str
) -> None:
    _ready(api, namespace, "relabelled", {})
    before = _credential(api, namespace, "relabelled")

    patch_access(
        api, namespace, "relabelled", {"spec": {"target": {"labels": {"team": "platform"}}}}
    )

    core = client.CoreV1Api(api)
    kube.eventually(
        lambda: (
            (core.read_namespaced_secret("relabelled-kubeconfig", namespace).metadata.labels).get(
                "team"
            )
            == "platform"
        ),
        what="the new label on the Secret",
    )
    assert _credential(api, namespace, "relabelled") == before


def test_the_refresh_annotation_fetches_a_new_credential_once(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id = solo_cluster(api, namespace, digitalocean)
    apply_access(api, namespace, "manual", {"clusterID": cluster_id, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "manual", "Ready", "True", "Issued")
    before = _credential(api, namespace, "manual")
    annotation = {"doks-access.dev/refresh-requested-at": "2026-11-28T12:00:00Z"}

    patch_access(api, namespace, "manual", {"metadata": {"annotations": annotation}})

    _reissued(api, namespace, "manual", before)
    fetches = fetches_for(digitalocean, cluster_id)
    patch_access(api, namespace, "manual", {"metadata": {"labels": {"unrelated": "change"}}})
    time.sleep(2)  # give a wrongly repeated refresh the time to happen
    assert fetches_for(digitalocean, cluster_id) == fetches == 2


def test_an_edited_secret_is_restored(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    _ready(api, namespace, "tampered", {})
    core = client.CoreV1Api(api)
    broken = base64.b64encode(b"not a kubeconfig").decode()

    core.patch_namespaced_secret(
        "tampered-kubeconfig", namespace, {"data": {"kubeconfig": broken, "extra": broken}}
    )

    def restored() -> bool:
        data = core.read_namespaced_secret("tampered-kubeconfig", namespace).data
        return bool(data["kubeconfig"] != broken)

    kube.eventually(restored, what="the operator to restore the edited Secret", timeout=30)
    secret = core.read_namespaced_secret("tampered-kubeconfig", namespace)
    assert secret.data["extra"] == broken  # a key a user added is theirs
    raw = kubeconfig_of(api, namespace, "tampered-kubeconfig", "kubeconfig")
    assert whoami(raw, tmp_path) == EMULATOR_USER


def test_two_objects_on_one_secret_do_not_fight(api: client.ApiClient, namespace: str) -> None:
    _ready(api, namespace, "first", {"target": {"name": "shared"}})
    core = client.CoreV1Api(api)
    version = core.read_namespaced_secret("shared", namespace).metadata.resource_version

    apply_access(api, namespace, "second", {"clusterID": CLUSTER_ID, "target": {"name": "shared"}})

    wait_for_condition(api, namespace, "second", "Stalled", "True", "SecretConflict")
    time.sleep(2)  # a ping-pong would show as new writes in this time
    assert core.read_namespaced_secret("shared", namespace).metadata.resource_version == version
    assert condition(get_access(api, namespace, "first"), "Ready")["status"] == "True"


def test_a_missing_token_secret_is_noticed_as_soon_as_it_is_created(
    api: client.ApiClient, namespace: str
) -> None:
    apply_access(api, namespace, "early", {"clusterID": CLUSTER_ID})
    obj = wait_for_condition(api, namespace, "early", "Stalled", "True", "TokenSecretMissing")
    assert condition(obj, "Ready")["reason"] == "TokenSecretMissing"

    create_token_secret(api, namespace)

    # Far sooner than the five-minute slow retry.
    kube.eventually(
        lambda: condition(get_access(api, namespace, "early"), "Ready")["status"] == "True",
        what="recovery after the token Secret appeared",
        timeout=30,
    )


def test_a_refused_token_recovers_when_the_token_secret_is_fixed(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    create_token_secret(api, namespace, token="dop_v1_" + "0" * 64)
    apply_access(api, namespace, "wrong-token", {"clusterID": CLUSTER_ID})
    obj = wait_for_condition(api, namespace, "wrong-token", "Stalled", "True", "Unauthorized")
    assert obj["status"]["lastFailureReason"] == "Unauthorized"

    client.CoreV1Api(api).patch_namespaced_secret(
        "digitalocean-api", namespace, {"stringData": {"token": DEMO_TOKEN}}
    )

    wait_for_condition(api, namespace, "wrong-token", "Ready", "True", "Issued")
    assert condition(get_access(api, namespace, "wrong-token"), "Stalled") is None


def test_an_unknown_cluster_stalls_with_cluster_not_found(
    api: client.ApiClient, namespace: str
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "ghost", {"clusterID": "00000000-0000-4000-8000-000000000000"})

    obj = wait_for_condition(api, namespace, "ghost", "Stalled", "True", "ClusterNotFound")

    assert condition(obj, "Ready")["status"] == "False"
    kube.eventually(
        lambda: ("Warning", "RenewalFailed") in events_of(api, namespace, "ghost"),
        what="a RenewalFailed event",
    )


# A bad upstream answer never replacing a good Secret: tests/hostile/test_malformed_upstream.py.


def test_status_and_events_never_carry_a_credential(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    _ready(api, namespace, "discreet", {})
    secrets = [DEMO_TOKEN] + [c.token for c in digitalocean.issued_credentials() if c.token]

    obj = get_access(api, namespace, "discreet")
    listed = client.CoreV1Api(api).list_namespaced_event(namespace)
    texts = [str(obj)] + [f"{e.reason} {e.message}" for e in listed.items]

    assert listed.items
    assert not [s[:6] for s in secrets if any(s in text for text in texts)]


def test_verify_records_who_the_new_credential_authenticates_as(
    api: client.ApiClient, namespace: str
) -> None:
    _ready(api, namespace, "verified", {"verify": True})

    assert get_access(api, namespace, "verified")["status"]["identity"] == EMULATOR_USER


@pytest.mark.parametrize("damage", ["deleted", "broken"])
def test_a_secret_lost_while_renewals_are_refused_is_written_again_at_once(
    api: client.ApiClient, namespace: str, digitalocean: Emulator, damage: str
) -> None:
    # Renewals fail and the next try is minutes away (a 401 is retried every five minutes); the
    # credential in the Secret is still good. Then consumers lose it: that is an outage, tried
    # at once rather than at the end of the wait.
    cluster_id = solo_cluster(api, namespace, digitalocean)
    apply_access(api, namespace, "lost", {"clusterID": cluster_id, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "lost", "Ready", "True", "Issued")
    fault = digitalocean.add_fault(Fault(kind="status", status=401, endpoint="kubeconfig"))
    try:
        request_refresh(api, namespace, "lost", "while-refused")
        refused = wait_for_condition(api, namespace, "lost", "Stalled", "True", "Unauthorized")
    finally:
        digitalocean.remove_fault(fault.id)
    retry_at = datetime.datetime.fromisoformat(refused["status"]["renewalTime"])
    failed_at = datetime.datetime.fromisoformat(refused["status"]["lastFailureTime"])
    assert retry_at - failed_at >= datetime.timedelta(minutes=4)  # the slow retry is pending
    core = client.CoreV1Api(api)
    fetched = fetches_for(digitalocean, cluster_id)

    if damage == "deleted":
        core.delete_namespaced_secret("lost-kubeconfig", namespace)
    else:
        broken = base64.b64encode(b"not a kubeconfig").decode()
        core.patch_namespaced_secret("lost-kubeconfig", namespace, {"data": {"kubeconfig": broken}})

    kube.eventually(
        lambda: fetches_for(digitalocean, cluster_id) > fetched,
        what="a new credential for the lost Secret",
        timeout=30,
    )
    assert datetime.datetime.now(datetime.UTC) < retry_at  # well before the pending retry
    kube.eventually(
        lambda: condition(get_access(api, namespace, "lost"), "Stalled") is None,
        what="the object to recover",
    )
    assert condition(get_access(api, namespace, "lost"), "Ready")["status"] == "True"
    assert fetches_for(digitalocean, cluster_id) == fetched + 1
    raw = kubeconfig_of(api, namespace, "lost-kubeconfig", "kubeconfig")
    assert raw.startswith(b"apiVersion")
