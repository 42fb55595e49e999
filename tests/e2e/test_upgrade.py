"""An upgrade from the daemon-based operator: its objects are taken over without a manual step.

The previous version (one Kopf daemon per object) put a finalizer on every object. The test runs
that version for real -- its package extracted from this repository's history -- lets it issue
credentials, stops it, and starts the current one: the objects must be re-planned without a
DigitalOcean call, renewed, and deleted with their Secrets garbage-collected.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from kubernetes import client

from doks_access.bookkeeping import HANDLED_REFRESH_REQUEST
from doks_access_testkit.emulator import Emulator
from tests import kube
from tests.chart.operator_as import operator_running
from tests.conftest import Cluster
from tests.e2e.objects import (
    GROUP,
    LEGACY_FINALIZER,
    PLURAL,
    VERSION,
    apply_access,
    fetches_for,
    get_access,
    request_refresh,
    solo_cluster,
    wait_for_condition,
)
from tests.running_operator import OperatorRunner

# The last commit of the daemon-based operator.
PREVIOUS_VERSION = "146d7fb"
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def previous_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous version's ``operator/`` directory, to put first on ``PYTHONPATH``."""
    found = subprocess.run(
        ["git", "-C", str(REPOSITORY), "cat-file", "-e", f"{PREVIOUS_VERSION}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"the previous version ({PREVIOUS_VERSION}) is not in this clone's history")
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", PREVIOUS_VERSION, "operator/doks_access"],
        capture_output=True,
        check=True,
    ).stdout
    destination = tmp_path_factory.mktemp("previous-version")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination / "operator"


def _secret_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    return not kube.is_absent(lambda: client.CoreV1Api(api).read_namespaced_secret(name, namespace))


def test_objects_of_the_daemon_based_version_are_taken_over_renewed_and_deleted(
    api: client.ApiClient,
    cluster: Cluster,
    digitalocean: Emulator,
    namespace: str,
    previous_version: Path,
    session_operator: OperatorRunner,
    tmp_path: Path,
) -> None:
    # Only the versions under test reconcile (the next test's `operator` fixture restarts it).
    session_operator.stop()
    cluster_id = solo_cluster(api, namespace, digitalocean)
    names = ["kept", "retained", "deleted"]
    log = tmp_path / "previous.log"
    with operator_running(
        kubeconfig=cluster.kubeconfig_path,
        digitalocean=digitalocean,
        log_path=log,
        args=[f"--namespace={namespace}"],
        env={"PYTHONPATH": str(previous_version)},  # its package before the current one
    ):
        for name in names:
            policy = "Retain" if name == "retained" else "Delete"
            target = {"deletionPolicy": policy}
            apply_access(api, namespace, name, {"clusterID": cluster_id, "target": target})
        for name in names:
            wait_for_condition(api, namespace, name, "Ready", "True", "Issued")
        made_by_previous = {name: get_access(api, namespace, name) for name in names}
    assert "fetching a credential" in log.read_text()  # the previous version did the work
    assert all(
        obj["metadata"].get("finalizers") == [LEGACY_FINALIZER] for obj in made_by_previous.values()
    ), "the previous version did not put its finalizer on its objects"
    fetched = fetches_for(digitalocean, cluster_id)
    assert fetched == 3

    session_operator.start()  # the current version, watching every namespace

    def finalizers_removed() -> bool:
        return all(
            not get_access(api, namespace, name)["metadata"].get("finalizers") for name in names
        )

    kube.eventually(finalizers_removed, what="the previous version's finalizers to be removed")
    for name in names:
        obj = get_access(api, namespace, name)
        # Re-planned from the Secret: the same credential, the same status, no DigitalOcean call.
        assert obj["status"] == made_by_previous[name]["status"]
    assert fetches_for(digitalocean, cluster_id) == fetched

    request_refresh(api, namespace, "kept", "after-the-upgrade")

    def renewed() -> bool:
        secret = client.CoreV1Api(api).read_namespaced_secret("kept-kubeconfig", namespace)
        handled = (secret.metadata.annotations or {}).get(HANDLED_REFRESH_REQUEST)
        return bool(handled == "after-the-upgrade")

    kube.eventually(renewed, what="the current version to renew an object of the previous one")
    assert fetches_for(digitalocean, cluster_id) == fetched + 1

    custom = client.CustomObjectsApi(api)
    for name in ("retained", "deleted"):
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    for name in ("retained", "deleted"):
        kube.eventually(
            lambda name=name: kube.is_absent(
                lambda: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            ),
            what=f"{name} to be deleted",
            timeout=30,
        )
    kube.eventually(
        lambda: not _secret_exists(api, namespace, "deleted-kubeconfig"),
        what="the deleted object's Secret to be garbage-collected",
        timeout=60,
    )
    assert _secret_exists(api, namespace, "retained-kubeconfig")  # deletionPolicy: Retain
    assert session_operator.process.exit_code() is None
