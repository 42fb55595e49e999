"""Two replicas with leader election: one reconciles, the other takes over when it dies."""

from __future__ import annotations

import functools
import os
import signal
import uuid
from collections.abc import Callable, Iterator
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
    leader_elected_replica,
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


def _replicas(
    *, cluster: Cluster, digitalocean: Emulator, namespace: str, logs: Path
) -> Callable[[str], ManagedProcess]:
    """Starts replicas that compete for one Lease of their own."""
    lease = f"lease-{uuid.uuid4().hex[:8]}"
    return functools.partial(
        leader_elected_replica,
        cluster=cluster,
        digitalocean=digitalocean,
        namespace=namespace,
        lease=lease,
        logs=logs,
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
    replica = _replicas(
        cluster=cluster, digitalocean=digitalocean, namespace=namespace, logs=tmp_path
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


@pytest.mark.usefixtures("without_the_session_operator")
def test_sigterm_stops_a_standby_and_a_leader_at_once_and_cleanly(
    cluster: Cluster, digitalocean: Emulator, namespace: str, tmp_path: Path
) -> None:
    """In a container the operator is PID 1, which the kernel spares from any signal without a
    handler: without its own, a standby (no Kopf, whose handlers come with it) would wait out the
    grace period. Here it exits 0 within seconds, as does the leader."""
    replica = _replicas(
        cluster=cluster, digitalocean=digitalocean, namespace=namespace, logs=tmp_path
    )
    leader = replica("leader")
    replicas = [leader]
    try:
        kube.eventually(lambda: "became leader" in _log(leader), what="the first replica to lead")
        standby = replica("standby")  # started once the first leads, so that it stands by
        replicas.append(standby)
        kube.eventually(lambda: "standing by" in _log(standby), what="the second to stand by")

        for replica in (standby, leader):
            os.kill(replica.pid, signal.SIGTERM)
            code = kube.eventually(
                lambda r=replica: r.exit_code(), what=f"{replica.name} to exit", timeout=10
            )
            assert code == 0, replica.log_tail()
        assert "stopping on SIGTERM" in _log(standby)
        # The leader stops through Kopf's own handler, and hands the Lease back on the way.
        assert f"released lease {namespace}/lease-" in _log(leader)
    finally:
        for started in replicas:
            started.stop()
