"""End to end: whatever DigitalOcean answers instead of a kubeconfig, the good Secret stays.

The operator runs; an object is Ready; then the kubeconfig endpoint answers something broken or
hostile (a 500, the emulator's own bad kubeconfigs, and every body of ``bodies.catalogue``) and a
refresh is requested. The object must report the failure while staying Ready, the Secret must be
byte-for-byte what it was and still authenticate, and nothing the upstream sent may be logged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from doks_access_testkit.emulator import Emulator, Fault
from tests import kube
from tests.e2e.objects import (
    CLUSTER_ID,
    EMULATOR_USER,
    apply_access,
    condition,
    create_token_secret,
    events_of,
    get_access,
    kubeconfig_of,
    request_refresh,
    wait_for_condition,
    whoami,
)
from tests.hostile.bodies import SECRET, catalogue
from tests.running_operator import OperatorRunner
from tests.unit.conftest import CertificateAuthority

_KINDS = ["malformed_body", "oversized_body", "exec_kubeconfig", "auth_provider_kubeconfig"]
FAULTS = {
    "500": Fault(kind="status", status=500, endpoint="kubeconfig"),
    "wrong-server": Fault(kind="wrong_server", endpoint="kubeconfig"),
    **{kind: Fault(kind=kind, endpoint="kubeconfig") for kind in _KINDS},  # type: ignore[arg-type]
    **{
        hostile.id: Fault(
            kind="body", body=hostile.body, content_type=hostile.content_type, endpoint="kubeconfig"
        )
        for hostile in catalogue(ca_pem=CertificateAuthority().pem)
    },
}


@pytest.mark.parametrize("fault", list(FAULTS.values()), ids=list(FAULTS))
def test_a_bad_upstream_answer_never_replaces_a_good_secret(
    api: client.ApiClient,
    namespace: str,
    digitalocean: Emulator,
    operator: OperatorRunner,
    tmp_path: Path,
    fault: Fault,
) -> None:
    create_token_secret(api, namespace)
    apply_access(api, namespace, "guarded", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "guarded", "Ready", "True", "Issued")
    before = kubeconfig_of(api, namespace, "guarded-kubeconfig", "kubeconfig")
    log_start = len(operator.log())

    added = digitalocean.add_fault(fault)
    try:
        request_refresh(api, namespace, "guarded", "1")
        obj = wait_for_condition(
            api, namespace, "guarded", "Reconciling", "True", "RetryingAfterError"
        )
        kube.eventually(
            lambda: ("Warning", "RenewalFailed") in events_of(api, namespace, "guarded"),
            what="a RenewalFailed event",
        )
    finally:
        digitalocean.remove_fault(added.id)

    assert condition(obj, "Ready")["status"] == "True"
    assert kubeconfig_of(api, namespace, "guarded-kubeconfig", "kubeconfig") == before
    assert whoami(before, tmp_path) == EMULATOR_USER
    assert operator.process.exit_code() is None
    messages = client.CoreV1Api(api).list_namespaced_event(namespace).items
    seen = [operator.log()[log_start:], str(get_access(api, namespace, "guarded"))]
    assert not [text for text in seen + [str(e.message) for e in messages] if SECRET in text]
