"""The README's demo command works: everything starts, the sample becomes Ready, and stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from doks_access_testkit.controlplane import ControlPlane


def test_the_demo_runs_through_and_leaves_nothing_running(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    del control_plane  # only here to skip against an external cluster: the demo starts its own
    completed = subprocess.run(
        [sys.executable, "-m", "doks_access_testkit.demo", "--once", f"--workdir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "doclusteraccess.doks-access.dev/prod condition met" in completed.stdout
    assert "authenticates against the API server: doks-emulator-admin" in completed.stdout
    assert "[demo/prod] fetching a credential (New)" in (tmp_path / "operator.log").read_text()


def test_the_real_mode_asks_for_a_token_and_a_kubeconfig(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DIGITALOCEAN_ACCESS_TOKEN", "KUBECONFIG")
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "doks_access_testkit.demo",
            "--cluster-id=bd5f5959-5e1e-4205-a714-a914373942af",
            f"--workdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )

    assert completed.returncode != 0
    assert "$DIGITALOCEAN_ACCESS_TOKEN and $KUBECONFIG" in completed.stderr
