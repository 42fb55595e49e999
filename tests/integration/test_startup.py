"""Starting ``doks-access run`` the ways users do, and failing the ways they see.

Credentials are found like kubectl finds them (in-cluster, ``$KUBECONFIG``, ``~/.kube/config``),
and a start-up problem that waiting cannot fix ends the process at once: exit status 1 and one
line saying what is wrong, instead of a process that stays up retrying in the background.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from doks_access_testkit.controlplane import free_port
from doks_access_testkit.emulator import Emulator
from doks_access_testkit.processes import ManagedProcess
from tests import kube
from tests.chart.operator_as import service_account_kubeconfig
from tests.conftest import Cluster, start_control_plane
from tests.e2e.objects import apply_access, solo_cluster, wait_for_condition

# Far longer than a start-up check takes; a process still up by then is retrying for ever.
PATIENCE = 60


def _environment(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Kubernetes or operator settings, HOME at ``home``."""
    cleared = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("DOKS_ACCESS_") and k not in cleared
    }
    return {**inherited, "HOME": str(home), **extra}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doks_access", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("doks-access: ")
    return lines[0]


def test_runs_with_only_the_kubeconfig_environment_variable(
    cluster: Cluster,
    digitalocean: Emulator,
    crds: list[str],
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    # What the help text promises: no --kubeconfig, credentials from $KUBECONFIG.
    del crds
    cluster_id = solo_cluster(api, namespace, digitalocean)
    env = _environment(
        tmp_path,
        KUBECONFIG=str(cluster.kubeconfig_path),
        DOKS_ACCESS_DIGITALOCEAN_API_URL=digitalocean.api_url,
        DOKS_ACCESS_DIGITALOCEAN_CA_FILE=str(digitalocean.ca_file),
    )
    process = ManagedProcess(
        name="doks-access-kubeconfig-env",
        args=[sys.executable, "-m", "doks_access", "run", f"--namespace={namespace}"],
        log_path=tmp_path / "operator.log",
        env=env,
    )
    try:
        apply_access(api, namespace, "env", {"clusterID": cluster_id})
        wait_for_condition(api, namespace, "env", "Ready", "True", "Issued")
        assert process.exit_code() is None
    finally:
        process.stop()
    assert (
        f"credentials from $KUBECONFIG ({cluster.kubeconfig_path})"
        in (tmp_path / "operator.log").read_text()
    )


def test_without_any_credentials_it_exits_at_once_saying_so(tmp_path: Path) -> None:
    completed = _run(env=_environment(tmp_path))

    assert completed.returncode == 1
    line = _one_line(completed.stderr)
    assert "no Kubernetes credentials" in line
    assert "$KUBECONFIG is not set" in line


def test_an_unreadable_kubeconfig_exits_at_once_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.kubeconfig"

    completed = _run(f"--kubeconfig={missing}", env=_environment(tmp_path))

    assert completed.returncode == 1
    assert str(missing) in _one_line(completed.stderr)


@pytest.mark.usefixtures("crds")
def test_credentials_without_the_rights_exit_at_once(
    cluster: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    # A ServiceAccount nobody granted anything: the API server answers 403.
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    kubeconfig = service_account_kubeconfig(
        api,
        admin_kubeconfig=cluster.kubeconfig_path,
        namespace=namespace,
        service_account="nobody",
        path=tmp_path / "nobody.kubeconfig",
    )

    completed = _run(f"--kubeconfig={kubeconfig}", env=_environment(tmp_path))

    assert completed.returncode == 1
    line = _one_line(completed.stderr)
    assert "HTTP 403" in line
    assert "RBAC" in line


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("endpoint", ["metrics", "liveness"])
def test_a_busy_port_exits_at_once(cluster: Cluster, tmp_path: Path, endpoint: str) -> None:
    port = free_port()
    with kube.listening("127.0.0.1", port):
        completed = _run(
            f"--kubeconfig={cluster.kubeconfig_path}",
            f"--{endpoint}-endpoint=http://127.0.0.1:{port}/{endpoint}",
            env=_environment(tmp_path),
        )

    assert completed.returncode == 1
    assert f"cannot serve {endpoint}" in _one_line(completed.stderr)


@pytest.mark.usefixtures("control_plane")
def test_without_the_crd_it_exits_at_once_saying_to_install_it(tmp_path: Path) -> None:
    bare = start_control_plane()  # no CRDs installed
    try:
        completed = _run(f"--kubeconfig={bare.admin_kubeconfig_path}", env=_environment(tmp_path))
    finally:
        bare.stop()

    assert completed.returncode == 1
    line = _one_line(completed.stderr)
    assert "CRD (doclusteraccesses.doks-access.dev) is not installed" in line


def test_a_bad_flag_is_a_usage_error(tmp_path: Path) -> None:
    completed = _run("--workers=0", env=_environment(tmp_path))

    assert completed.returncode == 2
    assert "argument --workers: '0' is not at least 1" in completed.stderr
    assert "Traceback" not in completed.stderr
