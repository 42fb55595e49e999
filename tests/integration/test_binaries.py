"""The control-plane binaries are the pinned upstream releases, version-stamped."""

from __future__ import annotations

import subprocess

from kubernetes import client

from doks_access_testkit.controlplane import ControlPlane

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "3.7.3"
HELM_VERSION = "v3.22.0"


def _version_output(control_plane: ControlPlane, *args: str) -> str:
    completed = subprocess.run(
        [str(control_plane.bin_dir / args[0]), *args[1:]],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return completed.stdout


def test_kube_apiserver_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    output = _version_output(control_plane, "kube-apiserver", "--version")
    assert output.strip() == f"Kubernetes {KUBERNETES_VERSION}"


def test_kube_controller_manager_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    output = _version_output(control_plane, "kube-controller-manager", "--version")
    assert output.strip() == f"Kubernetes {KUBERNETES_VERSION}"


def test_the_running_apiserver_serves_the_pinned_version(
    control_plane: ControlPlane, api: client.ApiClient
) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version == KUBERNETES_VERSION
    assert (info.major, info.minor) == ("1", "37")


def test_kubectl_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    output = _version_output(control_plane, "kubectl", "version", "--client", "-o", "json")
    assert f'"gitVersion": "{KUBERNETES_VERSION}"' in output


def test_etcd_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    output = _version_output(control_plane, "etcd", "--version")
    assert f"etcd Version: {ETCD_VERSION}" in output


def test_helm_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    output = _version_output(control_plane, "helm", "version", "--short")
    assert output.strip() == HELM_VERSION
