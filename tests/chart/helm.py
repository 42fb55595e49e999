"""The real ``helm`` binary (built by ``tools/controlplane/build.sh``), kept away from ``$HOME``.

Every call gets its own ``HELM_CACHE_HOME``/``HELM_CONFIG_HOME``/``HELM_DATA_HOME`` under a
directory of the test session's, and a kubeconfig only when it talks to a cluster, so a developer's
Helm setup neither influences the tests nor is touched by them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "doks-access-operator"
# The newest Kubernetes this project builds and tests against; the chart's kubeVersion is a floor.
KUBE_VERSION = "1.37.2"
_TIMEOUT_SECONDS = 120


class HelmError(AssertionError):
    """helm exited with an error; the message carries its output."""


@dataclasses.dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def with_kubeconfig(self, kubeconfig: Path) -> Helm:
        return dataclasses.replace(self, kubeconfig=kubeconfig)

    def run(self, *args: str) -> str:
        """Run ``helm args...``; its stdout, or ``HelmError`` with stdout and stderr."""
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HELM_")},
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            # Without a kubeconfig, helm must not find the developer's.
            "KUBECONFIG": str(self.kubeconfig or self.home / "no-kubeconfig"),
        }
        completed = subprocess.run(
            [str(self.binary), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            raise HelmError(
                f"helm {' '.join(args)} exited with {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return completed.stdout

    def values_file(self, values: Mapping[str, Any]) -> Path:
        """``values`` written to a file of its own (JSON is YAML), for ``--values``."""
        path = self.home / f"values-{uuid.uuid4().hex[:8]}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
        return path

    def template(
        self,
        *,
        values: Mapping[str, Any] | None = None,
        release: str = "doks-access-operator",
        namespace: str = "doks-access-system",
        extra: Sequence[str] = (),
    ) -> str:
        return self.run(
            "template",
            release,
            str(CHART_DIR),
            f"--namespace={namespace}",
            f"--kube-version={KUBE_VERSION}",
            f"--values={self.values_file(values or {})}",
            *extra,
        )

    def render(
        self,
        *,
        values: Mapping[str, Any] | None = None,
        release: str = "doks-access-operator",
        namespace: str = "doks-access-system",
    ) -> list[dict[str, Any]]:
        """The rendered objects, parsed."""
        text = self.template(values=values, release=release, namespace=namespace)
        return documents(text)

    def lint(self, *, values: Mapping[str, Any] | None = None) -> str:
        return self.run(
            "lint",
            "--strict",
            str(CHART_DIR),
            f"--kube-version={KUBE_VERSION}",
            f"--values={self.values_file(values or {})}",
        )


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def of_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rules_of(objects: Sequence[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every RBAC rule, with the Role or ClusterRole it belongs to."""
    for role in objects:
        if role["kind"] in ("Role", "ClusterRole"):
            for rule in role.get("rules") or []:
                yield role, rule
