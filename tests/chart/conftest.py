"""Fixtures for the chart's tests: the pinned ``helm`` and ``kubectl``, installed releases."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from doks_access_testkit.binaries import control_plane_bin_dir
from tests import kube
from tests.chart import chart_docs
from tests.chart.helm import CHART_DIR, Helm, HelmError
from tests.conftest import Cluster


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """Where the pinned binaries are (built on first use, then cached outside the repository)."""
    return control_plane_bin_dir()


@pytest.fixture(scope="session")
def helm(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """``helm`` for rendering and linting; it knows no cluster."""
    return Helm(binary=bin_dir / "helm", home=tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def cluster_helm(helm: Helm, cluster: Cluster) -> Helm:
    """``helm`` that installs into the test cluster, as its administrator."""
    return helm.with_kubeconfig(cluster.kubeconfig_path)


@pytest.fixture
def other_namespace(api: client.ApiClient) -> Iterator[str]:
    """A second fresh namespace, for a release that watches a namespace other than its own."""
    with kube.fresh_namespace(api) as name:
        yield name


@contextlib.contextmanager
def installed(
    helm: Helm, *, release: str, namespace: str, values: Mapping[str, Any]
) -> Iterator[str]:
    """``helm install`` (no ``--wait``: without a kubelet no pod ever runs), uninstalled afterwards.

    The CRD comes from the session's ``crds`` fixture, so releases leave it out: a second owner
    of the same CRD would make helm refuse the install.
    """
    try:
        helm.run(
            "install",
            release,
            str(CHART_DIR),
            f"--namespace={namespace}",
            f"--values={helm.values_file({'crds': {'enabled': False}, **values})}",
        )
        yield release
    finally:
        # Cluster-scoped objects (ClusterRoles, bindings) do not go with the namespace; a failed
        # install may have left some of them too.
        with contextlib.suppress(HelmError):
            helm.run("uninstall", release, f"--namespace={namespace}")


@pytest.fixture(scope="session")
def helm_docs() -> Path:
    """The pinned helm-docs: ``$DOKS_ACCESS_HELM_DOCS``, else ``tools/helm-docs/build.sh``'s binary.

    Skips only when neither is available (the build needs Go and the Go module proxy).
    """
    try:
        return chart_docs.helm_docs_binary()
    except chart_docs.HelmDocsUnavailableError as unavailable:
        pytest.skip(str(unavailable))
