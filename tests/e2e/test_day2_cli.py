"""End to end: the day-2 commands (``status``, ``renew``, ``check``) as a user runs them.

Each test runs the real command in its own process (``python -m doks_access ...`` or the installed
``kubectl-doca`` script), with ``$KUBECONFIG`` or ``--kubeconfig`` pointing at the test cluster,
against the session's operator and the DigitalOcean emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from doks_access_testkit.controlplane import ControlPlane
from doks_access_testkit.emulator import Emulator
from tests import kube
from tests.conftest import Cluster
from tests.e2e.objects import (
    apply_access,
    fetches_for,
    get_access,
    leader_elected_replica,
    solo_cluster,
    wait_for_condition,
)
from tests.running_operator import OperatorRunner

pytestmark = pytest.mark.usefixtures("operator")

PLUGIN = Path(sys.executable).parent / "kubectl-doca"


def run(
    *args: str,
    kubeconfig: Path | None = None,
    program: Sequence[str] = (sys.executable, "-m", "doks_access"),
    timeout: float = 120,
    path: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own; ``kubeconfig`` as ``$KUBECONFIG`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG"))}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [*program, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture
def ready_and_stalled(
    api: client.ApiClient, namespace: str, digitalocean: Emulator
) -> tuple[str, str]:
    """In ``namespace``: ``good`` (Ready) and ``bad`` (Stalled: its token Secret is missing).
    Returns the cluster ID ``good`` uses, and the namespace."""
    cluster_id = solo_cluster(api, namespace, digitalocean)
    apply_access(api, namespace, "good", {"clusterID": cluster_id, "expirySeconds": 3600})
    apply_access(
        api,
        namespace,
        "bad",
        {"clusterID": cluster_id, "tokenSecretRef": {"name": "no-such-secret"}},
    )
    wait_for_condition(api, namespace, "good", "Ready", "True", "Issued")
    wait_for_condition(api, namespace, "bad", "Stalled", "True", "TokenSecretMissing")
    return cluster_id, namespace


# -- status --------------------------------------------------------------------------------------


def test_status_of_a_ready_object_exits_0_and_shows_its_expiry(
    cluster: Cluster, ready_and_stalled: tuple[str, str]
) -> None:
    _, namespace = ready_and_stalled

    shown = run("status", "-n", namespace, "good", kubeconfig=cluster.kubeconfig_path)

    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split()[:5] == ["NAMESPACE", "KIND", "NAME", "READY", "REASON"]
    assert row.split()[:5] == [namespace, "access", "good", "True", "Issued"]
    assert "in 59m" in row or "in 1h0m" in row  # expires in an hour


def test_status_with_a_stalled_object_exits_1_and_its_json_says_why(
    cluster: Cluster, ready_and_stalled: tuple[str, str]
) -> None:
    _, namespace = ready_and_stalled

    # --kubeconfig instead of $KUBECONFIG, as `doks-access run` accepts it.
    shown = run("status", "-n", namespace, "-o", "json", f"--kubeconfig={cluster.kubeconfig_path}")

    assert shown.returncode == 1, shown.stderr
    answer = json.loads(shown.stdout)
    assert answer["allReady"] is False
    items = {item["name"]: item for item in answer["items"]}
    assert set(items) == {"good", "bad"}
    good, bad = items["good"], items["bad"]
    assert (good["kind"], good["ready"], good["reason"]) == ("DOClusterAccess", "True", "Issued")
    assert good["expiresAt"].endswith("Z")
    assert good["secretName"] == "good-kubeconfig"
    assert (bad["ready"], bad["stalled"]) == ("False", "TokenSecretMissing")
    assert bad["lastFailure"]["reason"] == "TokenSecretMissing"
    assert bad["expiresAt"] is None


def test_status_without_rights_says_forbidden_in_one_line(
    api: client.ApiClient, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = service_account_kubeconfig(api, cluster, namespace, tmp_path)

    shown = run("status", "-n", namespace, kubeconfig=kubeconfig)

    assert shown.returncode == 1
    assert shown.stdout == ""
    (line,) = shown.stderr.splitlines()
    assert "forbidden" in line
    assert "doks-access check" in line


# -- renew ---------------------------------------------------------------------------------------


def test_renew_waits_for_the_new_credential_and_costs_exactly_one_fetch(
    api: client.ApiClient,
    cluster: Cluster,
    digitalocean: Emulator,
    ready_and_stalled: tuple[str, str],
) -> None:
    cluster_id, namespace = ready_and_stalled
    issued_before = get_access(api, namespace, "good")["status"]["issuedAt"]
    fetched = fetches_for(digitalocean, cluster_id)

    renewed = run("renew", f"{namespace}/good", kubeconfig=cluster.kubeconfig_path)

    assert renewed.returncode == 0, renewed.stderr + str(get_access(api, namespace, "good"))
    status = get_access(api, namespace, "good")["status"]
    assert status["issuedAt"] != issued_before
    assert f"{namespace}/good: renewed: issued at {status['issuedAt']}" in renewed.stderr
    assert fetches_for(digitalocean, cluster_id) == fetched + 1
    assert renewed.stdout == ""


def test_renew_all_renews_every_object_of_the_namespace(
    api: client.ApiClient, cluster: Cluster, namespace: str, digitalocean: Emulator
) -> None:
    cluster_id = solo_cluster(api, namespace, digitalocean)
    for name in ("one", "two"):
        target = {"name": f"{name}-kubeconfig"}
        apply_access(api, namespace, name, {"clusterID": cluster_id, "target": target})
        wait_for_condition(api, namespace, name, "Ready", "True", "Issued")
    fetched = fetches_for(digitalocean, cluster_id)

    renewed = run(
        "renew", "--all", "-n", namespace, "--timeout=60s", kubeconfig=cluster.kubeconfig_path
    )

    assert renewed.returncode == 0, renewed.stderr
    assert f"{namespace}/one: renewed" in renewed.stderr
    assert f"{namespace}/two: renewed" in renewed.stderr
    assert fetches_for(digitalocean, cluster_id) == fetched + 2


def test_renew_of_a_stalled_object_reports_the_reason_and_exits_1(
    cluster: Cluster, ready_and_stalled: tuple[str, str]
) -> None:
    _, namespace = ready_and_stalled

    renewed = run(
        "renew", "bad", "-n", namespace, "--timeout=30s", kubeconfig=cluster.kubeconfig_path
    )

    assert renewed.returncode == 1
    assert f"{namespace}/bad: failed: Stalled TokenSecretMissing" in renewed.stderr


def test_renew_times_out_when_no_operator_answers(
    api: client.ApiClient,
    cluster: Cluster,
    operator: OperatorRunner,
    ready_and_stalled: tuple[str, str],
) -> None:
    _, namespace = ready_and_stalled
    operator.stop()
    try:
        renewed = run(
            "renew", f"{namespace}/good", "--timeout=3s", kubeconfig=cluster.kubeconfig_path
        )
    finally:
        operator.start()

    assert renewed.returncode == 1
    assert f"{namespace}/good: timed out after 3s" in renewed.stderr
    annotations = get_access(api, namespace, "good")["metadata"]["annotations"]
    assert "doks-access.dev/refresh-requested-at" in annotations


def test_renew_no_wait_only_requests(
    api: client.ApiClient, cluster: Cluster, ready_and_stalled: tuple[str, str]
) -> None:
    _, namespace = ready_and_stalled

    renewed = run("renew", f"{namespace}/good", "--no-wait", kubeconfig=cluster.kubeconfig_path)

    assert renewed.returncode == 0, renewed.stderr
    assert "refresh requested" in renewed.stderr
    assert "renewed:" not in renewed.stderr


def test_renew_of_a_missing_object_or_bad_usage_fails_clearly(
    cluster: Cluster, namespace: str
) -> None:
    missing = run("renew", f"{namespace}/nothing", kubeconfig=cluster.kubeconfig_path)
    usage = run("renew", kubeconfig=cluster.kubeconfig_path)

    assert missing.returncode == 1
    assert f"{namespace}/nothing: not found" in missing.stderr
    assert usage.returncode == 2
    assert "pass --all" in usage.stderr


# -- check ---------------------------------------------------------------------------------------


@pytest.fixture
def leading_operator(
    cluster: Cluster, digitalocean: Emulator, namespace: str, tmp_path: Path
) -> Iterator[str]:
    """An operator with leader election, holding a Lease in ``namespace`` (where it works, on
    nothing); yields the Lease's name."""
    lease = f"lease-{uuid.uuid4().hex[:8]}"
    process = leader_elected_replica(
        "leading",
        cluster=cluster,
        digitalocean=digitalocean,
        namespace=namespace,
        lease=lease,
        logs=tmp_path,
    )
    try:
        kube.eventually(
            lambda: "became leader" in process.log_path.read_text(errors="replace"),
            what="the operator to lead",
        )
        yield lease
    finally:
        process.stop()


def test_check_passes_with_the_admin_kubeconfig_and_a_leading_operator(
    cluster: Cluster, namespace: str, leading_operator: str
) -> None:
    checked = run(
        "check",
        "-n",
        namespace,
        f"--lease-namespace={namespace}",
        f"--lease-name={leading_operator}",
        kubeconfig=cluster.kubeconfig_path,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[FAIL]" not in checked.stdout
    assert f"Lease {namespace}/{leading_operator} is held by" in checked.stdout
    assert f"[ok] RBAC for status and renew in namespace {namespace}" in checked.stdout


def test_check_says_what_it_did_not_find(cluster: Cluster, namespace: str) -> None:
    checked = run(
        "check",
        "-n",
        namespace,
        f"--lease-namespace={namespace}",
        kubeconfig=cluster.kubeconfig_path,
    )

    assert checked.returncode == 1
    assert "[ok] CRDs served" in checked.stdout
    assert "clusterdoaccounts.doks-access.dev/v1alpha1: served" in checked.stdout
    assert "[FAIL] an operator is running" in checked.stdout
    assert f"no Lease doks-access-operator in namespace {namespace}" in checked.stdout
    assert "fix: install the operator" in checked.stdout


def test_check_fails_for_a_service_account_without_rights_and_says_how_to_fix_it(
    api: client.ApiClient, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = service_account_kubeconfig(api, cluster, namespace, tmp_path)

    checked = run("check", "-n", namespace, kubeconfig=kubeconfig)

    assert checked.returncode == 1
    out = checked.stdout
    assert "[ok] CRDs served" in out  # discovery is open to every authenticated user
    assert "[FAIL] an operator is running" in out
    assert "forbidden (no RBAC rights)" in out
    assert f"[FAIL] RBAC for status and renew in namespace {namespace}" in out
    assert "not allowed: get doclusteraccesses, list doclusteraccesses" in out
    assert f"a RoleBinding in {namespace}" in out
    assert "token" not in (out + checked.stderr).lower()


# -- the kubectl plugin --------------------------------------------------------------------------


def test_kubectl_doca_is_installed_and_runs_the_day2_commands(
    cluster: Cluster, ready_and_stalled: tuple[str, str]
) -> None:
    _, namespace = ready_and_stalled
    assert PLUGIN.is_file(), "kubectl-doca is not installed: `make venv` (pip install -e .)"

    shown = run(
        "status", "-n", namespace, "good", program=[str(PLUGIN)], kubeconfig=cluster.kubeconfig_path
    )
    usage = run("run", program=[str(PLUGIN)])

    assert shown.returncode == 0, shown.stderr
    assert " good " in shown.stdout
    assert usage.returncode == 2  # only the day-2 commands
    assert "usage: kubectl doca" in usage.stderr


def test_kubectl_finds_the_plugin_on_the_path(
    cluster: Cluster, control_plane: ControlPlane, ready_and_stalled: tuple[str, str]
) -> None:
    _, namespace = ready_and_stalled
    kubectl = control_plane.bin_dir / "kubectl"
    if not kubectl.is_file():
        pytest.skip("no kubectl among the control plane's binaries")
    path = os.pathsep.join([str(PLUGIN.parent), os.environ.get("PATH", "")])

    shown = run(
        "doca",
        "status",
        "-n",
        namespace,
        "-o",
        "json",
        program=[str(kubectl)],
        kubeconfig=cluster.kubeconfig_path,
        path=path,
    )

    assert shown.returncode == 1, shown.stderr  # `bad` is not Ready
    assert {item["name"] for item in json.loads(shown.stdout)["items"]} == {"good", "bad"}


# -- helpers -------------------------------------------------------------------------------------


def service_account_kubeconfig(
    api: client.ApiClient, cluster: Cluster, namespace: str, directory: Path
) -> Path:
    """A kubeconfig for a new ServiceAccount of ``namespace`` with no rights at all: the admin
    kubeconfig's server and CA, a bound token."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(cluster.kubeconfig_path.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    found = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    server_and_ca = dict(found["cluster"])
    if "certificate-authority" in server_and_ca:
        authority = cluster.kubeconfig_path.parent / server_and_ca["certificate-authority"]
        server_and_ca["certificate-authority"] = str(authority.resolve())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": server_and_ca}],
        "users": [{"name": "nobody", "user": {"token": token}}],
        "contexts": [{"name": "nobody", "context": {"cluster": "cluster", "user": "nobody"}}],
        "current-context": "nobody",
    }
    path = directory / "nobody.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
