"""The operator as users run it: ``doks-access run`` in its own process, against the session's
control plane and DigitalOcean API emulator.

A pytest plugin, not a conftest: the end-to-end and the hostile-input suites both need the *one*
session operator (two would reconcile the same objects against each other), so each suite's
conftest registers this module by name in ``pytest_configure``, which pytest does once:
``config.pluginmanager.import_plugin("tests.running_operator")`` (by name, unimported before, so
that pytest can rewrite its asserts).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from doks_access_testkit.controlplane import free_port
from doks_access_testkit.emulator import Emulator
from doks_access_testkit.processes import ManagedProcess
from tests.conftest import SESSION_OPERATORS, Cluster


class OperatorRunner:
    """One ``doks-access run`` process that tests can restart; its log survives restarts."""

    def __init__(
        self, *, args: list[str], env: dict[str, str], log_path: Path, metrics_url: str
    ) -> None:
        self._args, self._env, self.log_path = args, env, log_path
        self.metrics_url = metrics_url
        self.process = self._spawn()

    def _spawn(self) -> ManagedProcess:
        return ManagedProcess(
            name="doks-access", args=self._args, log_path=self.log_path, env=self._env
        )

    def restart(self) -> None:
        self.process.stop()
        self.process = self._spawn()

    def start(self) -> None:
        if self.process.exit_code() is not None:
            self.process = self._spawn()

    def stop(self) -> None:
        self.process.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def operator(session_operator: OperatorRunner) -> OperatorRunner:
    """The session's operator, running (started again if a test before stopped it)."""
    session_operator.start()
    return session_operator


# Where the session operator reads ClusterDOAccounts' token Secrets (tests/e2e/test_tenancy.py).
ACCOUNT_NAMESPACE = "doks-access-accounts"


@pytest.fixture(scope="session")
def session_operator(
    cluster: Cluster,
    digitalocean: Emulator,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorRunner]:
    """One operator for the session, watching every namespace, logging at DEBUG.

    It finds its credentials the way the README says a user running it outside a cluster does:
    from ``$KUBECONFIG``, without ``--kubeconfig``.
    """
    del crds  # installed before the operator starts
    metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
    runner = OperatorRunner(
        args=[sys.executable, "-m", "doks_access", "run"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")},
            "KUBECONFIG": str(cluster.kubeconfig_path),
            "DOKS_ACCESS_DIGITALOCEAN_API_URL": digitalocean.api_url,
            "DOKS_ACCESS_DIGITALOCEAN_CA_FILE": str(digitalocean.ca_file),
            "DOKS_ACCESS_LOG_LEVEL": "DEBUG",
            "DOKS_ACCESS_METRICS_ENDPOINT": metrics_url,
            "DOKS_ACCESS_ACCOUNT_NAMESPACE": ACCOUNT_NAMESPACE,
        },
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
        metrics_url=metrics_url,
    )
    SESSION_OPERATORS.append(runner)
    try:
        yield runner
    finally:
        runner.stop()
        exit_code = runner.process.exit_code()
        if exit_code not in (0, None):
            print(f"operator exited with {exit_code}:\n{runner.process.log_tail(60)}")
