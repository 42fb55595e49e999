"""Where Kubernetes credentials come from: --kubeconfig, in-cluster, $KUBECONFIG, ~/.kube/config."""

from __future__ import annotations

from pathlib import Path

import pytest

from doks_access import kube

IN_A_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "serviceaccount" / "token"
    path.parent.mkdir()
    path.write_text("a ServiceAccount token")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    return home


def test_the_flag_comes_first(home: Path, token_file: Path) -> None:
    source = kube.find_source(
        explicit=Path("/etc/operator.kubeconfig"),
        environ={**IN_A_POD, "KUBECONFIG": "/elsewhere"},
        home=home,
        service_account_token=token_file,
    )

    assert source.kubeconfig == "/etc/operator.kubeconfig"


def test_in_a_pod_the_service_account_comes_next(home: Path, token_file: Path) -> None:
    source = kube.find_source(
        explicit=None,
        environ={**IN_A_POD, "KUBECONFIG": "/elsewhere"},
        home=home,
        service_account_token=token_file,
    )

    assert source.in_cluster


def test_outside_a_pod_kubeconfig_comes_next(home: Path, token_file: Path) -> None:
    source = kube.find_source(
        explicit=None,
        environ={"KUBECONFIG": "/a/config:/b/config"},
        home=home,
        service_account_token=token_file,
    )

    assert source.kubeconfig == "/a/config:/b/config"
    assert source.described == "$KUBECONFIG (/a/config:/b/config)"


def test_the_service_host_without_a_token_file_is_not_a_pod(home: Path, tmp_path: Path) -> None:
    source = kube.find_source(
        explicit=None,
        environ={**IN_A_POD, "KUBECONFIG": "/elsewhere"},
        home=home,
        service_account_token=tmp_path / "absent",
    )

    assert source.kubeconfig == "/elsewhere"


def test_then_the_kubeconfig_in_the_home_directory(home: Path, tmp_path: Path) -> None:
    source = kube.find_source(
        explicit=None, environ={}, home=home, service_account_token=tmp_path / "absent"
    )

    assert source.kubeconfig == str(home / ".kube" / "config")


def test_without_any_it_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(kube.StartupError, match=r"\$KUBECONFIG is not set") as raised:
        kube.find_source(
            explicit=None, environ={}, home=tmp_path, service_account_token=tmp_path / "absent"
        )

    assert str(tmp_path / ".kube" / "config") in str(raised.value)
