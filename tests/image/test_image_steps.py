"""What the container image does, done here without a container engine.

The Dockerfile is linted with hadolint, and its install steps are replayed: build the wheel,
install it with the locked dependencies into a clean virtualenv, and run what the image runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from doks_access import __version__
from doks_access_testkit.processes import ManagedProcess
from tests import kube
from tests.conftest import Cluster

REPO = Path(__file__).resolve().parents[2]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    completed = subprocess.run(
        [str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv with only the operator's wheel and its locked runtime dependencies."""
    work = tmp_path_factory.mktemp("image")
    env = {**os.environ, "PIP_CONSTRAINT": str(REPO / "constraints.txt")}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(REPO)],
        check=True,
        env=env,
        timeout=300,
    )
    (wheel,) = work.glob("doks_access_operator-*.whl")
    venv = work / "venv"
    # As the Dockerfile does: a virtualenv without pip, filled by a pip from outside it.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        env=env,
        timeout=600,
    )
    yield venv
    shutil.rmtree(work, ignore_errors=True)


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=venv,  # not the repository: only what is installed may be imported
    )


def test_the_installed_command_reports_its_version(image_venv: Path) -> None:
    completed = _run(image_venv, "doks-access", "--version")
    assert completed.stdout.strip() == f"doks-access {__version__}"


def test_the_wheel_holds_the_operator_only(image_venv: Path) -> None:
    probe = (
        "import importlib.util, operator;"
        "assert operator.add(1, 2) == 3;"  # the standard library's module is not shadowed
        "assert importlib.util.find_spec('doks_access_testkit') is None;"
        "assert importlib.util.find_spec('pytest') is None;"
        "import doks_access.handlers"
    )
    # No installer in the runtime environment (the image removes the base image's, too).
    site = next((image_venv / "lib").glob("python3*/site-packages"))
    assert not [p.name for p in site.iterdir() if p.name.startswith(("pip", "setuptools"))]
    assert not list((image_venv / "bin").glob("pip*"))
    completed = _run(image_venv, "python", "-c", probe)
    assert completed.returncode == 0, completed.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.usefixtures("crds")
def test_the_installed_operator_starts_against_the_cluster(
    image_venv: Path, cluster: Cluster, tmp_path: Path
) -> None:
    port = _free_port()
    operator = ManagedProcess(
        name="doks-access",
        args=[
            str(image_venv / "bin" / "doks-access"),
            "run",
            f"--kubeconfig={cluster.kubeconfig_path}",
            "--namespace=doks-access-image-test",
            f"--liveness-endpoint=http://127.0.0.1:{port}/healthz",
        ],
        log_path=tmp_path / "operator.log",
    )
    try:
        kube.eventually(
            lambda: _alive(f"http://127.0.0.1:{port}/healthz"),
            what="the installed operator's liveness endpoint",
        )
        assert operator.exit_code() is None
    finally:
        operator.stop()


def test_the_image_is_labelled_runs_as_a_user_and_builds_from_a_pinned_base() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for label in ("source", "version", "revision", "licenses", "title", "description"):
        assert f"org.opencontainers.image.{label}=" in dockerfile, label
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    assert 'org.opencontainers.image.revision="${REVISION}"' in dockerfile
    assert "pip uninstall --yes --no-cache-dir pip setuptools" in dockerfile
    base = next(line for line in dockerfile.splitlines() if line.startswith("ARG BASE_IMAGE="))
    # A patch release, so that Renovate can raise it; the release build pins its digest.
    assert base.removeprefix("ARG BASE_IMAGE=python:").split("-")[0].count(".") == 2
    assert dockerfile.count("FROM ${BASE_IMAGE}") == 2
    assert "USER 65532:65532" in dockerfile
