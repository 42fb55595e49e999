"""The chart's README: helm-docs renders ``README.md.gotmpl`` with the values table of values.yaml.

``charts/doks-access-operator/README.md`` is this module's output, committed; a test regenerates it
into a temporary directory and compares. Regenerate it after changing values.yaml, Chart.yaml or
the template with ``make chart-docs``, or::

    .venv/bin/python -m tests.chart.chart_docs

helm-docs is the pinned build of ``tools/helm-docs/build.sh`` (``$DOKS_ACCESS_HELM_DOCS``, else the
script is run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.chart.helm import CHART_DIR, REPO_ROOT

HELM_DOCS_ENV = "DOKS_ACCESS_HELM_DOCS"
HELM_DOCS_BUILD = REPO_ROOT / "tools" / "helm-docs" / "build.sh"
README = CHART_DIR / "README.md"
REGENERATE = "make chart-docs"
# The values table follows values.yaml's order, which groups related keys.
ARGUMENTS = ("--sort-values-order=file", "--template-files=README.md.gotmpl", "--log-level=warning")
_TIMEOUT_SECONDS = 600


class HelmDocsUnavailableError(Exception):
    """Neither ``$DOKS_ACCESS_HELM_DOCS`` is set nor could ``tools/helm-docs/build.sh`` run."""


def helm_docs_binary() -> Path:
    """``$DOKS_ACCESS_HELM_DOCS``, else the binary ``tools/helm-docs/build.sh`` builds or reuses."""
    configured = os.environ.get(HELM_DOCS_ENV)
    if configured:
        return Path(configured)
    try:
        completed = subprocess.run(
            ["bash", str(HELM_DOCS_BUILD)],
            check=True,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError) as error:
        stderr = getattr(error, "stderr", None) or ""
        raise HelmDocsUnavailableError(
            f"${HELM_DOCS_ENV} is not set and {HELM_DOCS_BUILD.relative_to(REPO_ROOT)} failed "
            f"(it needs Go and the Go module proxy): {error} {stderr.strip()}"
        ) from error
    return Path(completed.stdout.strip().splitlines()[-1])


def generate(binary: Path) -> str:
    """The README helm-docs writes for a copy of the chart (the chart itself is left alone)."""
    with tempfile.TemporaryDirectory(prefix="doks-access-helm-docs-") as scratch:
        chart = Path(scratch) / CHART_DIR.name
        shutil.copytree(CHART_DIR, chart)
        (chart / "README.md").unlink(missing_ok=True)
        # helm-docs reads HELM_DOCS_* variables as flags; a developer's must not change the output.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_DOCS_")}
        subprocess.run(
            [str(binary), f"--chart-search-root={chart}", *ARGUMENTS],
            check=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
        )
        return (chart / "README.md").read_text()


def main() -> None:
    README.write_text(generate(helm_docs_binary()))
    print(f"wrote {README.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
