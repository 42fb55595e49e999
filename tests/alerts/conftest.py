"""Fixtures for the alert tests: the chart's rules rendered by the pinned ``helm``, and promtool."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from doks_access_testkit.binaries import control_plane_bin_dir
from tests.chart.helm import REPO_ROOT, Helm, one

PROMTOOL_ENV = "DOKS_ACCESS_PROMTOOL"
PROMTOOL_BUILD = REPO_ROOT / "tools" / "promtool" / "build.sh"
RELEASE = "doks-access-operator"
NAMESPACE = "doks-access-system"


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """``helm`` for rendering; it knows no cluster."""
    return Helm(binary=control_plane_bin_dir() / "helm", home=tmp_path_factory.mktemp("helm"))


def render_rules(helm: Helm, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chart's PrometheusRule's spec: a Prometheus rules file (``groups: [...]``)."""
    rendered = helm.render(
        values={"prometheusRule": {"enabled": True, **(values or {})}},
        release=RELEASE,
        namespace=NAMESPACE,
    )
    spec: dict[str, Any] = one(rendered, "PrometheusRule")["spec"]
    return spec


@pytest.fixture(scope="session")
def rules(helm: Helm) -> dict[str, Any]:
    """The rules the chart renders with its default values."""
    return render_rules(helm)


@pytest.fixture(scope="session")
def promtool() -> Path:
    """``$DOKS_ACCESS_PROMTOOL``, else ``tools/promtool/build.sh``'s binary.

    The build script reuses its cache; the first build compiles Prometheus and takes about ten
    minutes on two cores, so tests that use this fixture have a long timeout.
    """
    configured = os.environ.get(PROMTOOL_ENV)
    if configured:
        return Path(configured)
    completed = subprocess.run(
        ["bash", str(PROMTOOL_BUILD)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(completed.stdout.strip().splitlines()[-1])
