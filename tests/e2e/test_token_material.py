"""End to end: tokens stay in Secrets, and a DOClusterAccess reaches no other namespace.

The session's witness (``tests/witness.py``) checks logs, Events, status and metrics of every
test at the end; these tests check the places it cannot read from files, or a boundary it does not
exercise: the operator process's arguments and environment, a metrics scrape right after a
rejected token, and an object that tries to name another namespace.
"""

from __future__ import annotations

import secrets
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from doks_access_testkit.emulator import Emulator
from tests import kube, witness
from tests.e2e.objects import (
    CLUSTER_ID,
    GROUP,
    PLURAL,
    VERSION,
    apply_access,
    create_token_secret,
    fetches_for,
    get_access,
    solo_cluster,
    wait_for_condition,
)
from tests.running_operator import OperatorRunner

pytestmark = pytest.mark.usefixtures("operator")


@pytest.mark.skipif(not witness.PROC.is_dir(), reason="needs /proc")
def test_the_operator_process_carries_no_token_in_its_arguments_or_environment(
    api: client.ApiClient, namespace: str, operator: OperatorRunner
) -> None:
    """Tokens reach the operator through Secrets only: not as flags (world-readable in /proc),
    nor as environment variables (readable by the same user, copied into crash reports). Its
    environment is the test run's plus the documented ``DOKS_ACCESS_*`` settings."""
    create_token_secret(api, namespace)
    apply_access(api, namespace, "argv", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "argv", "Ready", "True", "Issued")

    text = witness.arguments_and_environment(operator.process.pid)

    assert "doks_access" in text  # the right process was read
    assert witness.leaked_in(text, witness.known_secrets()) == []


def _scrape(operator: OperatorRunner, path: Path) -> str:
    """The metrics text, also kept under basetemp for the session's witness."""
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:  # noqa: S310
        text: str = response.read().decode()
    path.write_text(text)
    return text


def test_metrics_after_a_rejected_and_an_accepted_token_carry_neither(
    api: client.ApiClient, namespace: str, operator: OperatorRunner
) -> None:
    wrong = secrets.token_hex(32)  # DigitalOcean's legacy token shape, unknown to the emulator
    create_token_secret(api, namespace, token=wrong)
    apply_access(api, namespace, "wrong", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "wrong", "Stalled", "True", "Unauthorized")
    client.CoreV1Api(api).delete_namespaced_secret("digitalocean-api", namespace)
    create_token_secret(api, namespace)
    apply_access(api, namespace, "right", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
    wait_for_condition(api, namespace, "right", "Ready", "True", "Issued")

    text = kube.eventually(
        lambda: (
            (t := _scrape(operator, operator.log_path.parent / f"{namespace}.prom"))
            and 'code="401"' in t
            and t
        ),
        what="the 401 in the metrics",
    )

    searched = [*witness.known_secrets(), witness.Secret(wrong, "the wrong token")]
    assert witness.leaked_in(text, searched) == []


def test_a_reference_to_another_namespace_is_pruned_and_nothing_crosses_over(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> None:
    """The token Secret is placed only in the other namespace, with a valid token: the operator
    must not use it, and must write nothing there. Once the object's own namespace holds the
    token, the Secret is written there, under the name given."""
    core = client.CoreV1Api(api)
    with kube.fresh_namespace(api) as other:
        cluster_id = solo_cluster(api, other, digitalocean)  # its token Secret: in `other` only
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DOClusterAccess",
            "metadata": {"name": "reaching"},
            "spec": {
                "clusterID": cluster_id,
                "tokenSecretRef": {"name": "digitalocean-api", "namespace": other},
                "target": {"name": "stolen", "namespace": other},
            },
        }
        created = client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, field_validation="Ignore"
        )
        assert "namespace" not in created["spec"]["tokenSecretRef"]
        assert "namespace" not in created["spec"]["target"]

        wait_for_condition(api, namespace, "reaching", "Stalled", "True", "TokenSecretMissing")
        assert fetches_for(digitalocean, cluster_id) == 0

        token = core.read_namespaced_secret("digitalocean-api", other).data["token"]
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="digitalocean-api"), data={"token": token}
            ),
        )
        wait_for_condition(api, namespace, "reaching", "Ready", "True", "Issued")

        assert get_access(api, namespace, "reaching")["status"]["secretName"] == "stolen"
        assert core.read_namespaced_secret("stolen", namespace).data
        assert [s.metadata.name for s in core.list_namespaced_secret(other).items] == [
            "digitalocean-api"
        ]
        assert fetches_for(digitalocean, cluster_id) == 1
