"""Where the control-plane binaries are: built, or found in a cache, by the pinned build script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BIN_DIR_ENV = "DOKS_ACCESS_CONTROLPLANE_BIN"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "controlplane" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")


def control_plane_bin_dir() -> Path:
    """The directory named by ``$DOKS_ACCESS_CONTROLPLANE_BIN``, else the build script's output.

    The build script reuses its versioned cache, so this is quick after the first build; the first
    build compiles Kubernetes and takes many minutes.
    """
    configured = os.environ.get(BIN_DIR_ENV)
    if configured:
        path = Path(configured)
    else:
        completed = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
        )
        path = Path(completed.stdout.strip().splitlines()[-1])
    missing = [name for name in BINARIES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {', '.join(missing)}; run {BUILD_SCRIPT}")
    return path
