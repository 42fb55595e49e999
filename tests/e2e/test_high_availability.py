"""Two replicas with leader election: one reconciles, the other takes over when it dies."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from doks_access_testkit.emulator import Emulator
from doks_access_testkit.processes import ManagedProcess
from tests import kube
from tests.conftest import Cluster
from tests.e2e.objects import (
    CLUSTER_ID,
    apply_access,
    create_token_secret,
    request_refresh,
    wait_for_condition,
)
from tests.running_operator import OperatorRunner


@pytest.fixture
def without_the_session_operator(operator: OperatorRunner) -> Iterator[None]:
    """The session's operator watches every namespace: it must not compete with the replicas."""
    operator.process.stop()
    try:
        yield
    finally:
        operator.start()


def _replica(
    name: str, *, cluster: Cluster, digitalocean: Emulator, namespace: str, lease: str, logs: Path
) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        args=[
            sys.executable,
            "-m",
            "doks_access",
            "run",
            f"--kubeconfig={cluster.kubeconfig_path}",
            f"--namespace={namespace}",
            "--leader-election",
            f"--leader-election-namespace={namespace}",
            f"--leader-election-lease-name={lease}",
        ],
        log_path=logs / f"{name}.log",
        env={
            **os.environ,
            "DOKS_ACCESS_DIGITALOCEAN_API_URL": digitalocean.api_url,
            "DOKS_ACCESS_DIGITALOCEAN_CA_FILE": str(digitalocean.ca_file),
        },
    )


def _log(process: ManagedProcess) -> str:
    return process.log_path.read_text(errors="replace")


@pytest.mark.usefixtures("without_the_session_operator")
def test_only_the_leader_reconciles_and_a_standby_takes_over_when_it_dies(
    api: client.ApiClient,
    cluster: Cluster,
    digitalocean: Emulator,
    namespace: str,
    tmp_path: Path,
) -> None:
    lease = f"ha-{uuid.uuid4().hex[:8]}"

    def replica(name: str) -> ManagedProcess:
        return _replica(
            name,
            cluster=cluster,
            digitalocean=digitalocean,
            namespace=namespace,
            lease=lease,
            logs=tmp_path,
        )

    first = replica("first")
    second: ManagedProcess | None = None
    try:
        kube.eventually(lambda: "became leader" in _log(first), what="the first replica to lead")
        second = replica("second")
        standby = second
        kube.eventually(lambda: "standing by" in _log(standby), what="the second to stand by")

        create_token_secret(api, namespace)
        apply_access(api, namespace, "ha", {"clusterID": CLUSTER_ID, "expirySeconds": 3600})
        wait_for_condition(api, namespace, "ha", "Ready", "True", "Issued")
        fetch = f"[{namespace}/ha] fetching a credential"
        assert fetch in _log(first)
        assert fetch not in _log(second)

        os.killpg(first.pid, signal.SIGKILL)  # no chance to hand the Lease back
        request_refresh(api, namespace, "ha", "failover")

        # The Lease lasts 15 s; the standby takes it once that passed on its own clock.
        kube.eventually(
            lambda: fetch in _log(standby), what="the standby to take over and fetch", timeout=45
        )
        assert "became leader" in _log(second)
        wait_for_condition(api, namespace, "ha", "Ready", "True", "Issued")
    finally:
        first.stop()
        if second is not None:
            second.stop()
